"""Lesson 17's job server: Python's multiprocessing.connection.Listener handing out jobs.

    python3 examples/17_job_server.py [port]

It listens on 127.0.0.1 (port 0, the default, lets the kernel choose; the port is printed),
serves one worker that knows the authkey (17_job_worker.cpp, or any Client with the key),
hands it 20 jobs one at a time, checks every result, then tells it to stop. A client with the
wrong key is turned away and the server waits for the next one. It prints a summary line and
exits with 0 only if every result was right; after 60 seconds it gives up (exit status 2), so it
never hangs, whatever the worker does.

The authkey is the environment variable CONCUR_JOB_AUTHKEY, or the demo key "concur lesson 17"
(the worker takes the same variable and the same default).

Messages are bytes (send_bytes/recv_bytes) in a text format that both sides parse:
    server -> worker   "<id> <op> <argument>"   e.g. "4 upper hello, worker"
    worker -> server   "<id> <result>"          e.g. "4 HELLO, WORKER"
    server -> worker   "stop"
Python's send()/recv() would pickle, which a C++ program cannot read: byte messages are the
common ground.
"""

import os
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener

AUTHKEY = os.environ.get("CONCUR_JOB_AUTHKEY", "concur lesson 17").encode()
TIMEOUT = 60  # seconds for the whole run


def make_jobs(count=20):
    """(op, argument, expected result) triples: numbers to square, text to upper-case, words."""
    sentences = ["a job server", "bytes  are the common ground", "one two three four five"]
    jobs = []
    for i in range(count):
        if i % 3 == 0:
            n = 1000003 * i - 7000000
            jobs.append(("square", str(n), str(n * n)))
        elif i % 3 == 1:
            text = f"hello, worker {i}"
            jobs.append(("upper", text, text.upper()))
        else:
            text = sentences[i % len(sentences)]
            jobs.append(("words", text, str(len(text.split()))))
    return jobs


def give_up():
    print(f"job server: nothing finished after {TIMEOUT} s, giving up", flush=True)
    os._exit(2)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    watchdog = threading.Timer(TIMEOUT, give_up)
    watchdog.daemon = True
    watchdog.start()

    jobs = make_jobs()
    turned_away = 0
    with Listener(("127.0.0.1", port), authkey=AUTHKEY) as listener:
        host, port = listener.address
        print(f"job server: listening on {host}:{port}", flush=True)
        while True:
            try:
                conn = listener.accept()  # runs the authkey handshake
                break
            except AuthenticationError as error:
                turned_away += 1
                print(f"job server: turned a client away: {error}", flush=True)
        right = 0
        with conn:
            peer_host, peer_port = listener.last_accepted
            print(f"job server: worker at {peer_host}:{peer_port} authenticated", flush=True)
            try:
                for job_id, (op, argument, expected) in enumerate(jobs, 1):
                    conn.send_bytes(f"{job_id} {op} {argument}".encode())
                    reply = conn.recv_bytes().decode()
                    if reply == f"{job_id} {expected}":
                        right += 1
                    else:
                        print(f"job server: job {job_id} ({op} {argument!r}): "
                              f"expected {job_id} {expected!r}, got {reply!r}", flush=True)
                conn.send_bytes(b"stop")
            except (EOFError, OSError) as error:
                print(f"job server: lost the worker: {error!r}", flush=True)
    print(f"job server: {right} of {len(jobs)} results right, "
          f"{turned_away} client(s) turned away", flush=True)
    return 0 if right == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
