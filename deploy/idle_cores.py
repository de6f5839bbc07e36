#!/usr/bin/env python3
"""Idle cores while work waited: reads a `perf` recording of `sched:sched_switch` (from
`BENCH_PERF=sched python3 deploy/bench.py`, or `perf record -e sched:sched_switch -a`) and prints,
per CPU, how long it ran nothing (the idle task) after threads named THREAD_PREFIX first ran,
and where those threads were when it went idle.

    python3 deploy/idle_cores.py PERF_DATA [THREAD_PREFIX]   # default prefix: argon2

A thread switched out in state R was preempted and still wants a core; if a CPU goes idle while
one does, the scheduler left it on another CPU's queue. That was the login phase's loss found
on 2026-11-29 (docs/performance.md). Migrations are not switch events, so "last seen here" is
where the thread last ran or was preempted, not necessarily its queue now.
"""

import re
import subprocess
import sys
from collections import Counter

SWITCH = re.compile(
    r"\s*\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+).*?prev_state=(\S+)"
    r" ==> next_comm=(.*?) next_pid=(\d+)")


def main():
    data = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else "argon2"
    script = subprocess.run(["perf", "script", "-i", data, "-F", "cpu,time,trace"],
                            capture_output=True, text=True, check=True).stdout
    threads = {}  # pid -> (cpu, running)
    idle_since = {}
    periods, idle_time = Counter(), Counter()
    first = last = None
    for line in script.splitlines():
        match = SWITCH.match(line)
        if not match:
            continue
        cpu, at, prev_comm, prev_pid, _state, next_comm, next_pid = match.groups()
        at = float(at)
        if prev_comm.startswith(prefix):
            threads[prev_pid] = (cpu, False)
        if next_comm.startswith(prefix):
            threads[next_pid] = (cpu, True)
        if not threads:
            continue
        first = at if first is None else first
        last = at
        if next_comm.startswith("swapper"):
            where = ", ".join(sorted(("here" if c == cpu else "other CPU") +
                                     (" running" if running else " waiting")
                                     for c, running in threads.values()))
            idle_since[cpu] = (at, where)
        elif cpu in idle_since:
            since, where = idle_since.pop(cpu)
            periods[where] += 1
            idle_time[where] += at - since
    if first is None:
        sys.exit(f"no thread named {prefix}* ran in {data}")
    span = last - first
    cpus = len({m.group(1) for m in map(SWITCH.match, script.splitlines()) if m})
    total = sum(idle_time.values())
    print(f"{span:.2f} s after the first {prefix}* switch, {cpus} CPUs: idle {total * 1e3:.1f} ms "
          f"({100 * total / (span * cpus):.1f} % of the CPUs' time) in {sum(periods.values())} periods")
    for where, seconds in idle_time.most_common():
        print(f"  {seconds * 1e3:8.1f} ms in {periods[where]:4} periods, {prefix} threads: {where}")


if __name__ == "__main__":
    main()
