#!/usr/bin/env python3
"""How long a process's worker threads shared one CPU: reads a `perf` recording of
`sched:sched_switch`, `sched:sched_wakeup` and `sched:sched_migrate_task` and prints the share of
the recording during which two or more of PID's threads named NAME (default: actix's HTTP
workers) were on the same CPU, and how often the scheduler moved them.

    perf record -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_migrate_task -a \\
        -o DATA -- sleep 4          # while the load runs
    python3 deploy/colocation.py DATA PID [NAME]

A thread's CPU is where it last ran, was woken to or was moved to. PID must still be running
(its threads are read from /proc). Found with it on 2026-11-29 (docs/performance.md): under a
closed-loop GET load, books-service's two workers shared a CPU 3.6 % of the time alone and
44.7 % during a login flood, when the hashing threads keep both CPUs busy and no CPU goes idle
to pull a worker over.
"""

import os
import re
import subprocess
import sys

EVENT = re.compile(r"\s*\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")


def threads(pid, name):
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            if comm.read().startswith(name):
                found.append(tid)
    return set(found)


def main():
    data, pid = sys.argv[1], sys.argv[2]
    name = sys.argv[3] if len(sys.argv) > 3 else "actix-server wo"
    workers = threads(pid, name)
    if len(workers) < 2:
        sys.exit(f"process {pid} has {len(workers)} thread(s) named {name!r}: nothing to compare")
    script = subprocess.run(["perf", "script", "-i", data, "-F", "cpu,time,event,trace"],
                            capture_output=True, text=True, check=True).stdout
    where, moves = {}, 0
    last = shared = known = 0.0
    for line in script.splitlines():
        match = EVENT.match(line)
        if not match:
            continue
        cpu, at, event, fields = int(match[1]), float(match[2]), match[3], match[4]
        # The time since the last event, counted once every worker's CPU is known.
        if len(where) == len(workers):
            known += at - last
            if len(set(where.values())) < len(where):
                shared += at - last
        last = at
        if event == "sched_switch":
            tid = re.search(r"next_pid=(\d+)", fields)[1]
            if tid in workers:
                where[tid] = cpu
        elif event == "sched_wakeup":
            tid, target = re.search(r"pid=(\d+)", fields)[1], re.search(r"target_cpu=(\d+)", fields)
            if tid in workers and target:
                where[tid] = int(target[1])
        elif event == "sched_migrate_task":
            tid, dest = re.search(r"pid=(\d+)", fields)[1], re.search(r"dest_cpu=(\d+)", fields)
            if tid in workers and dest:
                where[tid] = int(dest[1])
                moves += 1
    if known == 0:
        sys.exit("the recording never placed every worker: record longer, under load")
    print(f"{len(workers)} threads of {pid} named {name!r}: two or more on one CPU "
          f"{100 * shared / known:.1f} % of {known:.2f} s; moved {moves} times")


if __name__ == "__main__":
    main()
