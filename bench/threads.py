"""Where each part of a run spent its time: on a CPU, or ready to run and waiting for one.

Linux keeps, per thread, the nanoseconds it ran and the nanoseconds it spent runnable on a run queue
(``/proc/PID/task/TID/schedstat``), and how often it gave up the CPU by itself (to wait for I/O) or was made to
(``nonvoluntary_ctxt_switches``). Two snapshots of the server's process tree and the receiver's, taken when a
measured run starts and ends, give for each part: cores used, cores' worth of waiting for a CPU, and switches per
second. A part whose waiting is large next to its running holds up whatever waits for it.

Parts: the server's event loop (its main thread), the server's other threads (the store's, planning's), the
planning process, the function workers (every other child of the server), and the receiver (nginx).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.ingest import process_tree

PARTS = ("event loop", "server threads", "planner", "function workers", "receiver")


@dataclass(frozen=True, slots=True)
class TaskTime:
    part: str
    run_ns: int
    wait_ns: int
    voluntary: int
    involuntary: int


def _part(server: int, pid: int, tid: int) -> str:
    if pid == server:
        return "event loop" if tid == server else "server threads"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "function workers"
    return "planner" if b"multiprocessing" in command else "function workers"


def snapshot(server: int, receiver: int | None) -> dict[tuple[int, int], TaskTime]:
    """Every thread of the server's tree and of the receiver's, by (pid, tid)."""
    pids = [(pid, None) for pid in process_tree(server)]
    if receiver is not None:
        pids += [(pid, "receiver") for pid in process_tree(receiver)]
    found: dict[tuple[int, int], TaskTime] = {}
    for pid, fixed in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                run, wait, _ = (int(x) for x in (task / "schedstat").read_text().split())
                switches = {}
                for line in (task / "status").read_text().splitlines():
                    if line.endswith(tuple("0123456789")) and "ctxt_switches" in line:
                        key, value = line.split(":")
                        switches[key] = int(value)
            except (OSError, ValueError):
                continue
            tid = int(task.name)
            part = fixed or _part(server, pid, tid)
            found[pid, tid] = TaskTime(
                part,
                run,
                wait,
                switches.get("voluntary_ctxt_switches", 0),
                switches.get("nonvoluntary_ctxt_switches", 0),
            )
    return found


def summarize(
    before: dict[tuple[int, int], TaskTime], after: dict[tuple[int, int], TaskTime], seconds: float
) -> dict[str, dict[str, float]]:
    """Per part: ``run`` and ``wait`` in cores, ``voluntary`` and ``involuntary`` switches per second, and
    ``threads`` seen in both snapshots (threads that came or went in between are left out)."""
    parts = {part: {"run": 0.0, "wait": 0.0, "voluntary": 0.0, "involuntary": 0.0, "threads": 0.0} for part in PARTS}
    for key, end in after.items():
        start = before.get(key)
        if start is None:
            continue
        part = parts[end.part]
        part["run"] += (end.run_ns - start.run_ns) / 1e9 / seconds
        part["wait"] += (end.wait_ns - start.wait_ns) / 1e9 / seconds
        part["voluntary"] += (end.voluntary - start.voluntary) / seconds
        part["involuntary"] += (end.involuntary - start.involuntary) / seconds
        part["threads"] += 1
    return {name: {k: round(v, 3) for k, v in values.items()} for name, values in parts.items() if values["threads"]}


def table(parts: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"    {'part':17} {'threads':>7} {'run cores':>9} {'wait cores':>10} {'vol/s':>7} {'invol/s':>7}"]
    for name, p in parts.items():
        lines.append(
            f"    {name:17} {p['threads']:7.0f} {p['run']:9.2f} {p['wait']:10.2f} "
            f"{p['voluntary']:7.0f} {p['involuntary']:7.0f}"
        )
    return lines


class Watch:
    """Thread times over a run: a first snapshot, then the latest reading of every thread seen since (``take``,
    called every half second or so). A thread that started after the first snapshot counts from zero; one that ended
    keeps its last reading, so at most one interval of it is lost (the planning process ends before the run)."""

    def __init__(self, server: int, receiver: int | None) -> None:
        self.server, self.receiver = server, receiver
        self.first = snapshot(server, receiver)
        self.latest = dict(self.first)

    def take(self) -> None:
        self.latest.update(snapshot(self.server, self.receiver))

    def summary(self, seconds: float) -> dict[str, dict[str, float]]:
        zero = {key: TaskTime(t.part, 0, 0, 0, 0) for key, t in self.latest.items() if key not in self.first}
        return summarize({**zero, **self.first}, self.latest, seconds)
