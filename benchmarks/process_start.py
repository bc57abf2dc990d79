#!/usr/bin/env python3
"""Times Python's multiprocessing.Process start+join, the reference process_bench compares
concur::Process with (its "start_join/python multiprocessing" row runs this script).

    python3 benchmarks/process_start.py                 # a readable line
    python3 benchmarks/process_start.py --seconds       # seconds per start+join, alone

The child does nothing, as in process_bench. The fork start method is the default here because
concur::Process forks too; --method forkserver or spawn times the others.
"""

import argparse
import multiprocessing
import statistics
import time


def nothing():
    pass


def start_join(context):
    process = context.Process(target=nothing)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"child exited with {process.exitcode}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="processes per batch")
    parser.add_argument("--batches", type=int, default=1, help="batches; the median is kept")
    parser.add_argument("--method", default="fork", help="fork, forkserver or spawn")
    parser.add_argument("--seconds", action="store_true", help="print only seconds per process")
    args = parser.parse_args()
    if args.count < 1 or args.batches < 1:
        parser.error("--count and --batches must be at least 1")

    context = multiprocessing.get_context(args.method)
    for _ in range(3):  # warm up: imports, the forkserver, caches
        start_join(context)
    per_process = []
    for _ in range(args.batches):
        begin = time.perf_counter()
        for _ in range(args.count):
            start_join(context)
        per_process.append((time.perf_counter() - begin) / args.count)
    seconds = statistics.median(per_process)
    if args.seconds:
        print(f"{seconds:.9f}")
    else:
        print(f"multiprocessing.Process start+join ({args.method}): {seconds * 1e6:.1f} us")


if __name__ == "__main__":
    main()
