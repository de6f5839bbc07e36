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

import sys
from collections import Counter

from sched_trace import Switch, events


def main():
    data = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else "argon2"
    threads = {}  # tid -> (cpu, running)
    idle_since = {}
    periods, idle_time = Counter(), Counter()
    cpus = set()
    first = last = None
    for event in events(data):
        if not isinstance(event, Switch):
            continue
        cpus.add(event.cpu)
        if event.prev_comm.startswith(prefix):
            threads[event.prev_tid] = (event.cpu, False)
        if event.next_comm.startswith(prefix):
            threads[event.next_tid] = (event.cpu, True)
        if not threads:
            continue
        first = event.at if first is None else first
        last = event.at
        if event.next_comm.startswith("swapper"):
            where = ", ".join(sorted(("here" if c == event.cpu else "other CPU") +
                                     (" running" if running else " waiting")
                                     for c, running in threads.values()))
            idle_since[event.cpu] = (event.at, where)
        elif event.cpu in idle_since:
            since, where = idle_since.pop(event.cpu)
            periods[where] += 1
            idle_time[where] += event.at - since
    if first is None:
        sys.exit(f"no thread named {prefix}* ran in {data}")
    span = last - first
    total = sum(idle_time.values())
    print(f"{span:.2f} s after the first {prefix}* switch, {len(cpus)} CPUs: idle "
          f"{total * 1e3:.1f} ms ({100 * total / (span * len(cpus)):.1f} % of the CPUs' time) in "
          f"{sum(periods.values())} periods")
    for where, seconds in idle_time.most_common():
        print(f"  {seconds * 1e3:8.1f} ms in {periods[where]:4} periods, {prefix} threads: {where}")


if __name__ == "__main__":
    main()
