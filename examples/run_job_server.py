"""Runs lesson 17 for ctest: the Python job server and the C++ worker, and checks both.

    python3 run_job_server.py 17_job_server.py path/to/17_job_worker

It starts the server with a fresh random authkey in CONCUR_JOB_AUTHKEY and reads the port it
prints. Then it runs the worker twice: first without the variable, so with the demo key, which
the server must turn away (the worker exits with 1 and reports AuthenticationError); then with
the server's key, which must do all 20 jobs and stop when told. Last, the server must exit with
0 and print its summary. Exit status 0 if all of that held, 1 if not; every wait is bounded and
the server is killed if it is still running at the end.
"""

import os
import re
import secrets
import subprocess
import sys

WAIT = 90  # seconds for each step; the server gives up by itself after 60


def check(condition, what, *outputs):
    if not condition:
        print(f"FAILED: {what}")
        for output in outputs:
            print(output)
        sys.exit(1)
    print(f"ok: {what}")


def run_worker(worker, port, env):
    done = subprocess.run([worker, "127.0.0.1", port], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT)
    print(done.stdout + done.stderr, end="")
    return done


def main():
    server_script, worker = sys.argv[1], sys.argv[2]
    key = secrets.token_hex(16)
    with_key = dict(os.environ, CONCUR_JOB_AUTHKEY=key)
    without_key = {name: value for name, value in os.environ.items()
                   if name != "CONCUR_JOB_AUTHKEY"}
    server = subprocess.Popen([sys.executable, server_script], env=with_key,
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        first = server.stdout.readline()  # the server prints it at once, or gives up in 60 s
        print(first, end="")
        listening = re.fullmatch(r"job server: listening on 127\.0\.0\.1:(\d+)\n", first)
        check(listening, "the server prints the port it listens on")
        port = listening.group(1)

        wrong = run_worker(worker, port, without_key)
        check(wrong.returncode == 1 and "AuthenticationError" in wrong.stderr,
              f"a worker with the wrong key is turned away (exit status {wrong.returncode})")

        right = run_worker(worker, port, with_key)
        check(right.returncode == 0 and "worker: stopped after 20 jobs" in right.stdout,
              f"the worker with the key does 20 jobs and stops (exit status {right.returncode})")

        rest, _ = server.communicate(timeout=WAIT)
        print(rest, end="")
        check("job server: turned a client away" in rest,
              "the server saw the wrong key and went on listening")
        check(server.returncode == 0 and
              "job server: 20 of 20 results right, 1 client(s) turned away" in rest,
              f"the server checked every result (exit status {server.returncode})")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
