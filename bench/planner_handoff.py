"""The planning process's hand-off: a chunk of planned batches from the planning process to the server, two ways.

The planning process (pointcast.engine.planner) sends each committed chunk's batches, with their endpoint
definitions already joined (about 34 KB a batch, 100 batches a chunk), down a 1 MB pipe to the server. This measures,
in one run and between two real processes, the two ways it has done so:

* ``pickle``: ``Connection.send`` of the ``Prepared`` items (the way before the ninth session);
* ``frames``: ``planner.send_chunk`` / ``planner.receive_chunk`` (the rows as plain tuples, then each batch's
  definitions as a message of its own).

    .venv/bin/python -m bench.planner_handoff [--chunks 60] [--rounds 2]

It prints, per way and round, the wall time and the CPU of each end per batch, and checks that what arrived is what
was sent.
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import platform
import random
import sys
import time
from multiprocessing.connection import Connection

from pointcast.engine import planner
from pointcast.engine.plan import BATCH_SIZE, CHUNK, BatchRow, Prepared

BATCHES = CHUNK // BATCH_SIZE
PAYLOAD = 34_000  # the webhook benchmark's 50 endpoint definitions, joined


def chunk(seed: int) -> list[Prepared]:
    """A chunk as planning hands it on: rows, ids and joined definitions (the same random bytes in both
    processes for the same ``seed``)."""
    randbytes = random.Random(seed).randbytes
    rows = []
    for k in range(BATCHES):
        row = BatchRow(f"{seed:08x}{k:024x}", "r" * 32, "a" * 32, "0", "2026-11-24T00:00:00.000Z", 0, "p" * 32)
        rows.append(Prepared(row, [f"ep-{seed:04d}{k:04d}{i:02d}" for i in range(BATCH_SIZE)], {}, randbytes(PAYLOAD)))
    return rows


def _write(out: Connection, way: str, chunks: int) -> None:
    items = chunk(0)
    started = time.process_time()
    for _ in range(chunks):
        if way == "pickle":
            out.send(items)
        else:
            planner.send_chunk(out, items)
    out.send_bytes(repr(time.process_time() - started).encode())


def measure(way: str, chunks: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    fcntl.fcntl(send.fileno(), fcntl.F_SETPIPE_SZ, planner.PIPE_SIZE)
    writer = context.Process(target=_write, args=(send, way, chunks))
    writer.start()
    send.close()
    expected = chunk(0)
    read = (lambda: receive.recv()) if way == "pickle" else (lambda: planner.receive_chunk(receive))
    first = read()  # the writer's start-up is not timed
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(chunks - 1):
        last = read()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    writer_cpu = float(receive.recv_bytes())
    writer.join()
    if first != expected or last != expected:
        raise SystemExit(f"{way}: what arrived is not what was sent")
    batches = (chunks - 1) * BATCHES
    return {
        "wall_us": 1e6 * wall / batches,
        "reader_cpu_us": 1e6 * cpu / batches,
        "writer_cpu_us": 1e6 * writer_cpu / (chunks * BATCHES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=60, help=f"chunks of {BATCHES} batches per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="each way this many times, alternating")
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}"
    )
    print(
        f"{args.chunks} chunks of {BATCHES} batches of {PAYLOAD:,} bytes, through a {planner.PIPE_SIZE >> 20} MB pipe"
    )
    head = ("way", "round", "wall us/batch", "server (reader) CPU us/batch", "planner (writer) CPU us/batch")
    print(f"{head[0]:>7} {head[1]:>5} {head[2]:>14} {head[3]:>29} {head[4]:>30}")
    for round_ in range(1, args.rounds + 1):
        for way in ("pickle", "frames"):
            r = measure(way, args.chunks)
            print(f"{way:>7} {round_:>5} {r['wall_us']:>14.1f} {r['reader_cpu_us']:>29.1f} {r['writer_cpu_us']:>30.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
