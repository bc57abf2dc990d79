#!/usr/bin/env python3
"""Times Python's multiprocessing.Lock and multiprocessing.Value, the references mp_bench
compares concur::mp::Lock and concur::mp::Value with (its "python ..." rows run this script).

    python3 benchmarks/mp_python.py --kind value --ops 200000            # a readable line
    python3 benchmarks/mp_python.py --kind value --ops 200000 --seconds

Kinds, as in mp_bench:
  lock-uncontended  one process acquires and releases an mp.Lock --ops times.
  lock-contended    two processes each do --ops / 2 rounds of: acquire the mp.Lock, add 1 to a
                    RawValue, release.
  value             two processes each do --ops / 2 rounds of `with v.get_lock(): v.value += 1`
                    on an mp.Value('l').
  queue-1p1c        one process puts --ops ints into an mp.Queue(1024), another gets them.
  queue-2p2c        two processes put --ops / 2 ints each, two get --ops / 2 each.
  queue-text-1p1c   as queue-1p1c, with each number put as its decimal str.
  condition         two processes take turns --ops times between them: under an mp.Condition,
                    wait_for the count's parity to be theirs, add 1, notify.
  barrier           two processes each wait --ops / 2 times on an mp.Barrier(2).
The processes are forked and wait at a start line (an mp.Event) before the clock starts; the
total is checked. With --seconds the script prints the wall seconds per operation and the CPU
seconds per operation of every process that worked (the children's, or this one's when it
worked alone), the median of --batches batches.
"""

import argparse
import multiprocessing
import resource
import statistics
import time


def cpu_seconds(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def uncontended(ops):
    lock = multiprocessing.Lock()
    begin_cpu = time.process_time()
    begin = time.perf_counter()
    for _ in range(ops):
        lock.acquire()
        lock.release()
    return time.perf_counter() - begin, time.process_time() - begin_cpu


def lock_worker(lock, counter, rounds, ready, go):
    ready.release()
    go.wait()
    for _ in range(rounds):
        lock.acquire()
        counter.value += 1
        lock.release()


def value_worker(value, rounds, ready, go):
    ready.release()
    go.wait()
    for _ in range(rounds):
        with value.get_lock():
            value.value += 1


def turn_worker(condition, counter, index, rounds, ready, go):
    ready.release()
    go.wait()
    for _ in range(rounds):
        with condition:
            condition.wait_for(lambda: counter.value % 2 == index)
            counter.value += 1
            condition.notify()


def barrier_worker(barrier, counter, rounds, ready, go):
    ready.release()
    go.wait()
    served = 0
    for _ in range(rounds):
        served += barrier.wait() == 0
    with counter.get_lock():
        counter.value += served


def producer(queue, values, text, ready, go):
    ready.release()
    go.wait()
    if text:
        for value in values:
            queue.put(str(value))
    else:
        for value in values:
            queue.put(value)


def consumer(queue, count, text, total, ready, go):
    ready.release()
    go.wait()
    got = 0
    if text:
        for _ in range(count):
            got += int(queue.get())
    else:
        for _ in range(count):
            got += queue.get()
    with total.get_lock():
        total.value += got


def queue_processes(context, kind, ops):
    sides = 2 if kind == "queue-2p2c" else 1
    text = kind == "queue-text-1p1c"
    per = ops // sides
    queue = context.Queue(1024)
    total = context.Value("q", 0)
    ready = context.Semaphore(0)
    go = context.Event()
    workers = [context.Process(target=producer,
                               args=(queue, range(p * per, (p + 1) * per), text, ready, go))
               for p in range(sides)]
    workers += [context.Process(target=consumer, args=(queue, per, text, total, ready, go))
                for _ in range(sides)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    begin_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    go.set()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - begin
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - begin_cpu
    n = per * sides
    if total.value != n * (n - 1) // 2:
        raise SystemExit(f"wrong total: {total.value}")
    return wall, cpu, n


def two_processes(context, kind, ops):
    rounds = ops // 2
    ready = context.Semaphore(0)
    go = context.Event()
    if kind == "lock-contended":
        lock = context.Lock()
        counter = context.RawValue("l", 0)
        args = (lock, counter, rounds, ready, go)
        target = lock_worker
        total = lambda: counter.value
    elif kind == "condition":
        condition = context.Condition()
        counter = context.RawValue("l", 0)
        workers = [context.Process(target=turn_worker,
                                   args=(condition, counter, index, rounds, ready, go))
                   for index in range(2)]
        total = lambda: counter.value
    elif kind == "barrier":
        barrier = context.Barrier(2)
        counter = context.Value("l", 0)
        args = (barrier, counter, rounds, ready, go)
        target = barrier_worker
        total = lambda: 2 * counter.value  # one of the two is served each round
    else:
        value = context.Value("l", 0)
        args = (value, rounds, ready, go)
        target = value_worker
        total = lambda: value.value
    if kind != "condition":
        workers = [context.Process(target=target, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    begin_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    go.set()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - begin
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - begin_cpu
    if total() != 2 * rounds:
        raise SystemExit(f"wrong total: {total()} of {2 * rounds}")
    # The children's CPU includes their start (a few milliseconds of interpreter work before the
    # start line), which flatters nobody: it only adds to Python's CPU per operation.
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["lock-uncontended", "lock-contended", "value", "queue-1p1c",
                                 "queue-2p2c", "queue-text-1p1c", "condition", "barrier"],
                        default="value")
    parser.add_argument("--ops", type=int, default=200000)
    parser.add_argument("--batches", type=int, default=1, help="batches; the median is kept")
    parser.add_argument("--seconds", action="store_true", help="print only the two numbers")
    args = parser.parse_args()
    if args.ops < 2 or args.batches < 1:
        parser.error("--ops must be at least 2 and --batches at least 1")
    context = multiprocessing.get_context("fork")
    results = []
    for _ in range(args.batches):
        if args.kind == "lock-uncontended":
            wall, cpu = uncontended(args.ops)
            ops = args.ops
        elif args.kind.startswith("queue"):
            wall, cpu, ops = queue_processes(context, args.kind, args.ops)
        else:
            wall, cpu = two_processes(context, args.kind, args.ops)
            ops = args.ops // 2 * 2
        results.append((wall / ops, cpu / ops))
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    if args.seconds:
        print(f"{wall:.12f} {cpu:.12f}")
    else:
        print(f"{args.kind} ({args.ops} operations): {wall * 1e9:.1f} ns per operation "
              f"({1 / wall:.0f}/s), CPU {cpu * 1e9:.1f} ns per operation")


if __name__ == "__main__":
    main()
