#!/usr/bin/env python3
"""Times Python's multiprocessing.Pool.map and ProcessPoolExecutor.map, the references pool_bench
compares concur::mp::Pool and concur::ProcessPoolExecutor with (its "python ..." rows run this
script).

    python3 benchmarks/pool_python.py --tasks 20000 --chunksize 1          # a readable line
    python3 benchmarks/pool_python.py --tasks 20000 --chunksize 1 --seconds

The task is x * x over range(--tasks), as in pool_bench; the results are checked. --chunksize 0
is Python's default: Pool.map's, ceil(tasks / (4 * processes)), which the script also passes to
ProcessPoolExecutor.map (whose own default is 1). The pool (--processes workers, forked) is
started, and its workers run a first small map, before the clock starts. With --seconds the
script prints the wall seconds per task and this process's CPU seconds per task (the parent's:
the workers' CPU is not counted, as in pool_bench), the median of --batches batches.
"""

import argparse
import concurrent.futures
import multiprocessing
import statistics
import time


def square(x):
    return x * x


def default_chunksize(tasks, processes):
    chunksize, extra = divmod(tasks, processes * 4)
    return chunksize + 1 if extra else chunksize


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["pool", "executor"], default="pool",
                        help="multiprocessing.Pool or concurrent.futures.ProcessPoolExecutor")
    parser.add_argument("--tasks", type=int, default=1000000)
    parser.add_argument("--chunksize", type=int, default=0, help="0: Python's default")
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--batches", type=int, default=1, help="batches; the median is kept")
    parser.add_argument("--seconds", action="store_true", help="print only the two numbers")
    args = parser.parse_args()
    if args.tasks < 1 or args.batches < 1 or args.processes < 1 or args.chunksize < 0:
        parser.error("--tasks, --batches and --processes must be at least 1")
    chunksize = args.chunksize or default_chunksize(args.tasks, args.processes)

    context = multiprocessing.get_context("fork")
    expected = sum(x * x for x in range(args.tasks))
    if args.kind == "pool":
        pool = context.Pool(args.processes)
        run = lambda: pool.map(square, range(args.tasks), chunksize)
        close = lambda: (pool.close(), pool.join())
    else:
        pool = concurrent.futures.ProcessPoolExecutor(args.processes, mp_context=context)
        run = lambda: list(pool.map(square, range(args.tasks), chunksize=chunksize))
        close = lambda: pool.shutdown()
    # Start every worker and warm up.
    if args.kind == "pool":
        pool.map(square, range(100 * args.processes), 1)
    else:
        list(pool.map(square, range(100 * args.processes)))
    results = []
    for _ in range(args.batches):
        begin_cpu = time.process_time()
        begin = time.perf_counter()
        values = run()
        wall = time.perf_counter() - begin
        cpu = time.process_time() - begin_cpu
        if sum(values) != expected:
            raise SystemExit("wrong results")
        results.append((wall / args.tasks, cpu / args.tasks))
    close()
    wall = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] for r in results)
    if args.seconds:
        print(f"{wall:.12f} {cpu:.12f}")
    else:
        name = "multiprocessing.Pool.map" if args.kind == "pool" else "ProcessPoolExecutor.map"
        print(f"{name}({args.processes} processes, chunksize {chunksize}, {args.tasks} tasks): "
              f"{wall * 1e6:.2f} us per task ({1 / wall:.0f} tasks/s), parent CPU "
              f"{cpu * 1e6:.2f} us per task")


if __name__ == "__main__":
    main()
