#!/usr/bin/env python3
"""Times Python's multiprocessing.connection Listener and Client over TCP on 127.0.0.1, the
reference listener_bench compares concur's Listener and Client with (its "python" rows run this
script).

    python3 benchmarks/listener_python.py --mode roundtrip             # a readable line
    python3 benchmarks/listener_python.py --mode roundtrip --seconds   # two numbers, alone

Modes, as in listener_bench:
    roundtrip  a 64-byte message sent with send_bytes and echoed back by a thread on the accepted
               end (recv_bytes, then send_bytes), --count times in a row on one connection made
               with --authkey; the round trips start after the handshake and a few warm-up trips
    connect    --count connections, one after the other: the time from the Client() call until
               both Client() and the accepting thread's accept() have returned (authentication
               with --authkey included; an empty --authkey means none). Both ends are closed
               after the interval, before the next Client() call, so closing is not timed.

With an authkey both sides authenticate: the Listener's deliver_challenge, then the Client's.
The form of the challenge is this Python's: HMAC-MD5 without a digest name before 3.12, then
"{sha256}" and the digest name (concur's Listener sends the latter).

With --seconds the script prints the wall seconds per round trip (or per connection) and the
process's CPU seconds per round trip (or connection, over the same intervals; every thread,
time.process_time), the median of --batches batches.
"""

import argparse
import statistics
import threading
import time
from multiprocessing.connection import Client, Listener

ADDRESS = ("127.0.0.1", 0)
WARM_UP = 10  # round trips, or connections, before the clock starts


def round_trips(count, authkey):
    with Listener(ADDRESS, authkey=authkey) as listener:

        def echo():
            with listener.accept() as accepted:
                try:
                    while True:
                        accepted.send_bytes(accepted.recv_bytes())
                except EOFError:
                    pass

        echoer = threading.Thread(target=echo)
        echoer.start()
        try:
            with Client(listener.address, authkey=authkey) as connection:
                message = b"x" * 64
                for _ in range(WARM_UP):
                    connection.send_bytes(message)
                    message = connection.recv_bytes()
                begin_cpu = time.process_time()
                begin = time.perf_counter()
                for _ in range(count):
                    connection.send_bytes(message)
                    message = connection.recv_bytes()
                wall = time.perf_counter() - begin
                cpu = time.process_time() - begin_cpu
                if len(message) != 64:
                    raise SystemExit("the echo came back changed")
        finally:
            echoer.join()
    return wall / count, cpu / count


def connections(count, authkey):
    total = WARM_UP + count
    with Listener(ADDRESS, authkey=authkey) as listener:
        accepted = []  # (connection, the moment accept() returned)
        done = threading.Semaphore(0)
        failure = []

        def acceptor():
            try:
                for _ in range(total):
                    connection = listener.accept()
                    accepted.append((connection, time.perf_counter()))
                    done.release()
            except BaseException as error:  # reported by the main thread
                failure.append(error)
                done.release()

        thread = threading.Thread(target=acceptor)
        thread.start()
        wall = 0.0
        cpu = 0.0
        try:
            for i in range(total):
                if i == WARM_UP:
                    wall = cpu = 0.0
                begin_cpu = time.process_time()
                start = time.perf_counter()
                client = Client(listener.address, authkey=authkey)
                returned = time.perf_counter()
                done.acquire()
                if failure:
                    client.close()
                    raise SystemExit(f"accept() failed: {failure[0]!r}")
                wall += max(returned, accepted[i][1]) - start
                cpu += time.process_time() - begin_cpu
                client.close()
                accepted[i][0].close()
        finally:
            thread.join()
    return wall / count, cpu / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["roundtrip", "connect"], default="roundtrip")
    parser.add_argument("--count", type=int, default=5000,
                        help="round trips, or connections, per batch")
    parser.add_argument("--authkey", default="concur-bench",
                        help="the key on both sides; empty: no authentication")
    parser.add_argument("--batches", type=int, default=1, help="batches; the median is kept")
    parser.add_argument("--seconds", action="store_true", help="print only the two numbers")
    args = parser.parse_args()
    if args.count < 1 or args.batches < 1:
        parser.error("--count and --batches must be at least 1")
    authkey = args.authkey.encode() or None

    run = round_trips if args.mode == "roundtrip" else connections
    results = [run(args.count, authkey) for _ in range(args.batches)]
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    if args.seconds:
        print(f"{wall:.12f} {cpu:.12f}")
    else:
        what = "round trip" if args.mode == "roundtrip" else "connection"
        print(f"multiprocessing.connection {args.mode} (authkey {'yes' if authkey else 'no'}): "
              f"{wall * 1e6:.2f} us per {what}, CPU {cpu * 1e6:.2f} us per {what}")


if __name__ == "__main__":
    main()
