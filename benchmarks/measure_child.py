"""Runs one command and reports its own wall time, CPU time and peak RSS: ``measure_child.py FD ARGV...``.

The harness does not fork the measured commands itself. Linux counts the RSS
a process had before ``exec`` into its ``ru_maxrss`` (the fork's copy of the
parent), so every command forked from the harness reported at least the
harness's own peak: 65 MB once it held a Dask ``LocalCluster`` client, more
than ``mproxy dissect`` itself uses. Forked from this small process instead, a
command's peak RSS is its own. The result goes to file descriptor FD as one
line: ``wall_seconds cpu_seconds max_rss_kb exit_code``; standard input,
output and error are the command's.
"""

import os
import sys
import time


def main() -> None:
    result_fd, argv = int(sys.argv[1]), sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(result_fd)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"measure_child: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    os.write(result_fd, f"{elapsed} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {code}\n".encode())


if __name__ == "__main__":
    main()
