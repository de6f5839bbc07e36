"""Scheduler events from a `perf` recording, for deploy/idle_cores.py and
deploy/run_queue_waits.py: `perf script` read once, each `sched_switch` and `sched_wakeup`
parsed into a tuple."""

import re
import subprocess
from typing import Iterator, NamedTuple


class Switch(NamedTuple):
    cpu: str
    at: float
    prev_comm: str
    prev_tid: str
    prev_state: str
    next_comm: str
    next_tid: str


class Wakeup(NamedTuple):
    cpu: str
    at: float
    comm: str
    tid: str


SWITCH = re.compile(
    r"\s*\[(\d+)\]\s+([\d.]+):\s+(?:sched:sched_switch:\s+)?prev_comm=(.*?) prev_pid=(\d+) .*?"
    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")
WAKEUP = re.compile(r"\s*\[(\d+)\]\s+([\d.]+): sched:sched_wakeup: comm=(.*?) pid=(\d+) ")


def events(data: str) -> Iterator["Switch | Wakeup"]:
    """The recording's switches and wake-ups, in order; other events are skipped."""
    script = subprocess.run(["perf", "script", "-i", data, "-F", "cpu,time,event,trace"],
                            capture_output=True, text=True, check=True).stdout
    for line in script.splitlines():
        if match := SWITCH.match(line):
            cpu, at, *rest = match.groups()
            yield Switch(cpu, float(at), *rest)
        elif match := WAKEUP.match(line):
            cpu, at, comm, tid = match.groups()
            yield Wakeup(cpu, float(at), comm, tid)
