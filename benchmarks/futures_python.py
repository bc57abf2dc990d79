#!/usr/bin/env python3
"""Times Python's concurrent.futures.ThreadPoolExecutor, the reference futures_bench compares
concur::ThreadPoolExecutor with (its "python ThreadPoolExecutor" rows run this script).

    python3 benchmarks/futures_python.py --mode submit               # a readable line
    python3 benchmarks/futures_python.py --mode submit --seconds     # two numbers, alone

Modes, as in futures_bench:
    submit     --tasks empty tasks submitted from one thread, then all waited for
               (concurrent.futures.wait)
    submit4    the same from --submitters threads, each submitting its share and waiting for it
    roundtrip  submit(f).result() on an idle pool, --tasks times in a row

The pool has --workers threads, started (by a first batch of tasks) before the clock starts.
With --seconds the script prints the wall seconds per task and the process's CPU seconds per
task (every thread, time.process_time), the median of --batches batches.
"""

import argparse
import concurrent.futures
import statistics
import threading
import time


def nothing():
    pass


def submit_all(executor, tasks):
    futures = [executor.submit(nothing) for _ in range(tasks)]
    concurrent.futures.wait(futures)


def submit_from_threads(executor, tasks, submitters):
    share = tasks // submitters
    start = threading.Barrier(submitters + 1)

    def submitter():
        start.wait()
        submit_all(executor, share)

    threads = [threading.Thread(target=submitter) for _ in range(submitters)]
    for t in threads:
        t.start()
    start.wait()  # the clock of the caller starts as the submitters are released
    for t in threads:
        t.join()
    return share * submitters


def round_trips(executor, tasks):
    for _ in range(tasks):
        executor.submit(nothing).result()


def one_batch(executor, args):
    begin_cpu = time.process_time()
    begin = time.perf_counter()
    tasks = args.tasks
    if args.mode == "submit":
        submit_all(executor, tasks)
    elif args.mode == "submit4":
        tasks = submit_from_threads(executor, tasks, args.submitters)
    else:
        round_trips(executor, tasks)
    wall = time.perf_counter() - begin
    cpu = time.process_time() - begin_cpu
    return wall / tasks, cpu / tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["submit", "submit4", "roundtrip"], default="submit")
    parser.add_argument("--tasks", type=int, default=50000, help="tasks per batch")
    parser.add_argument("--workers", type=int, default=4, help="the pool's max_workers")
    parser.add_argument("--submitters", type=int, default=4, help="threads submitting (submit4)")
    parser.add_argument("--batches", type=int, default=1, help="batches; the median is kept")
    parser.add_argument("--seconds", action="store_true", help="print only the two numbers")
    args = parser.parse_args()
    if args.tasks < 1 or args.batches < 1 or args.workers < 1 or args.submitters < 1:
        parser.error("--tasks, --batches, --workers and --submitters must be at least 1")

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as executor:
        # Start every worker (Python starts them on demand) and warm up.
        submit_all(executor, 100 * args.workers)
        results = [one_batch(executor, args) for _ in range(args.batches)]
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    if args.seconds:
        print(f"{wall:.12f} {cpu:.12f}")
    else:
        print(f"ThreadPoolExecutor({args.workers}) {args.mode}: {wall * 1e6:.2f} us per task "
              f"({1 / wall:.0f} tasks/s), CPU {cpu * 1e6:.2f} us per task")


if __name__ == "__main__":
    main()
