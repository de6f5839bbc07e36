#!/usr/bin/env python3
"""How long a process's threads waited for a core, and who held it meanwhile: reads a `perf`
recording of `sched:sched_switch` and `sched:sched_wakeup` (`BENCH_PERF=sched python3
deploy/bench.py`, or `perf record -e sched:sched_switch -e sched:sched_wakeup -a`) and prints, for
the threads of PID, the waits after a wake-up and after a preemption (p50, p99, max), and for
waits over 1 ms the threads that ran on that CPU during them.

    python3 deploy/run_queue_waits.py PERF_DATA PID [PID ...]

Threads of the PIDs given are labelled `<pid>:<name>`, others by name. Found with it on
2026-11-29 (docs/performance.md): during a login flood, books-service's workers were preempted
20 000 times in 4 s, and the waits over 1 ms were spent behind the other books-service worker on
the same CPU.
"""

import collections
import os
import sys

from sched_trace import Wakeup, events


def threads_of(pids):
    owner = {}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            owner[tid] = pid
    return owner


def percentile(values, fraction):
    return values[min(len(values) - 1, int(len(values) * fraction))]


def main():
    data, pids = sys.argv[1], sys.argv[2:]
    owner = threads_of(pids)
    label = lambda tid, comm: f"{owner[tid]}:{comm}" if tid in owner else comm
    woken, preempted, running = {}, {}, {}
    slices = collections.defaultdict(list)
    waits = collections.defaultdict(list)  # (label, kind) -> [(start, end, cpu)]
    for event in events(data):
        if isinstance(event, Wakeup):
            if event.tid in owner:
                woken[event.tid] = event.at
            continue
        if event.cpu in running:
            tid, comm, since = running[event.cpu]
            slices[event.cpu].append((since, event.at, label(tid, comm)))
        running[event.cpu] = (event.next_tid, event.next_comm, event.at)
        if event.prev_tid in owner and event.prev_state.startswith("R"):
            preempted[event.prev_tid] = event.at
        for kind, pending in (("after a wake-up", woken), ("after a preemption", preempted)):
            if event.next_tid in pending:
                start = pending.pop(event.next_tid)
                waits[(label(event.next_tid, event.next_comm), kind)].append(
                    (start, event.at, event.cpu))
    for (who, kind), spans in sorted(waits.items()):
        lengths = sorted(end - start for start, end, _ in spans)
        long = [(s, e, c) for s, e, c in spans if e - s > 0.001]
        print(f"{who}, {kind}: {len(lengths)} waits, p50 {percentile(lengths, 0.5) * 1e6:.0f} µs, "
              f"p99 {percentile(lengths, 0.99) * 1e6:.0f} µs, max {lengths[-1] * 1e3:.2f} ms; "
              f"{len(long)} over 1 ms ({sum(e - s for s, e, _ in long) * 1e3:.1f} ms)")
        holders = collections.Counter()
        for start, end, cpu in long:
            for since, until, holder in slices[cpu]:
                overlap = min(until, end) - max(since, start)
                if overlap > 0:
                    holders[holder] += overlap
        if holders:
            print("    held meanwhile by: " + ", ".join(
                f"{holder} {seconds * 1e3:.1f} ms" for holder, seconds in holders.most_common(5)))


if __name__ == "__main__":
    main()
