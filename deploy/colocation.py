#!/usr/bin/env python3
"""How long a process's worker threads shared one CPU: reads a `perf` recording of
`sched:sched_switch`, `sched:sched_wakeup` and `sched:sched_migrate_task` and prints the share of
the recording during which two or more of PID's threads named NAME (default: actix's HTTP
workers) were placed on the same CPU, the share during which two or more were also runnable
there (queued behind each other, the part that costs latency), and how often the scheduler
moved them.

    perf record -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_migrate_task -a \\
        -o DATA -- sleep 4          # while the load runs
    python3 deploy/colocation.py DATA PID [NAME]

A thread's CPU is where it last ran, was woken to or was moved to; it is runnable from its
wake-up until it switches out to sleep. PID must still be running (its threads are read from
/proc). Found with it on 2026-11-29 (docs/performance.md): under a closed-loop GET load,
books-service's two workers were placed on one CPU 1-11 % of the time alone and 36-57 % during
a login flood, when the hashing threads keep both CPUs busy and no CPU goes idle to pull a
worker over."""

import os
import re
import subprocess
import sys

EVENT = re.compile(r"\s*\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")
# The field naming the CPU a thread goes to: woken to, or moved to.
CPU_FIELD = {"sched_wakeup": "target_cpu", "sched_migrate_task": "dest_cpu"}


def threads(pid, name):
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                if comm.read().startswith(name):
                    found.add(tid)
        except OSError:  # the thread ended meanwhile
            pass
    return found


def crowded(cpus):
    """Whether two or more of these CPUs are the same."""
    return len(set(cpus)) < len(cpus)


def main():
    data, pid = sys.argv[1], sys.argv[2]
    name = sys.argv[3] if len(sys.argv) > 3 else "actix-server wo"
    workers = threads(pid, name)
    if len(workers) < 2:
        sys.exit(f"process {pid} has {len(workers)} thread(s) named {name!r}: nothing to compare")
    script = subprocess.run(["perf", "script", "-i", data, "-F", "cpu,time,event,trace"],
                            capture_output=True, text=True, check=True).stdout
    where, runnable, moves = {}, set(), 0
    last = placed = queued = known = 0.0
    for line in script.splitlines():
        match = EVENT.match(line)
        if not match:
            continue
        cpu, at, event, fields = int(match[1]), float(match[2]), match[3], match[4]
        # The time since the last event, counted once every worker's CPU is known.
        if len(where) == len(workers):
            known += at - last
            if crowded(list(where.values())):
                placed += at - last
            if crowded([where[tid] for tid in runnable]):
                queued += at - last
        last = at
        if event == "sched_switch":
            prev, state = re.search(r"prev_pid=(\d+) .*?prev_state=(\S+)", fields).groups()
            if prev in workers and not state.startswith("R"):
                runnable.discard(prev)
            tid = re.search(r"next_pid=(\d+)", fields)[1]
            if tid in workers:
                where[tid] = cpu
                runnable.add(tid)
        elif event in CPU_FIELD:
            tid = re.search(r"pid=(\d+)", fields)[1]
            to = re.search(rf"{CPU_FIELD[event]}=(\d+)", fields)
            if tid in workers and to:
                where[tid] = int(to[1])
                if event == "sched_wakeup":
                    runnable.add(tid)
                else:
                    moves += 1
    if known == 0:
        sys.exit("the recording never placed every worker: record longer, under load")
    print(f"{len(workers)} threads of {pid} named {name!r}, over {known:.2f} s: two or more "
          f"placed on one CPU {100 * placed / known:.1f} %, runnable there together "
          f"{100 * queued / known:.1f} %; moved {moves} times")


if __name__ == "__main__":
    main()
