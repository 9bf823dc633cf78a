"""Planning a large run in a child process, so that planning (parsing and testing every endpoint) does not take the
server's interpreter lock from the event loop that sends.

The runner plans a run's first chunk on a thread; if there is more, it starts a child process (``multiprocessing``,
spawn) and goes on planning on the thread while the child starts (about a second of imports); once the child says it
is ready, the thread stops after its chunk under way, and the child goes on from the run's planning cursor and sends
each committed chunk's batches, with the endpoint definitions it read, back over a pipe. The pipe is read only as
fast as the runner's look-ahead empties, so the child waits when delivery is behind. Killing the child at any point
loses nothing: each chunk commits with the cursor, and the next planning of the run goes on from there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from pointcast.engine.plan import BatchRow, Prepared, plan_run
from pointcast.store import Database

PR_SET_PDEATHSIG = 1
PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size's default: no privilege needed


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the server dies, so no orphan plans beside the next server. (The signal
    comes when the thread that started the child ends: the runner starts it from the event loop's thread, which
    lives as long as the server; were it to end early, that would only stop planning, which the next tick resumes.)"""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


READY = "ready"


def send_chunk(out: Connection, items: list[Prepared]) -> None:
    """Write a chunk's batches: their rows and endpoint ids as plain tuples (one pickled message), then each batch's
    joined endpoint definitions as a message of its own. Pickling the ``Prepared`` items themselves cost as much as
    planning them: each ``BatchRow`` went through ``copyreg``, and the 3.5 MB of definitions were copied (and the
    fresh memory faulted in) as the pickle grew; a 34 KB message is written from where it lies."""
    rows = []
    for batch, ids, _docs, endpoints, _not_now in items:
        assert endpoints is not None  # planning hands on only batches it joined
        rows.append((batch.id, batch.run_id, batch.activity_id, batch.treatment_id, batch.not_before,
                     batch.attempts, batch.app_id, ids))  # fmt: skip
    out.send_bytes(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL))
    for item in items:
        out.send_bytes(item.endpoints)  # type: ignore[arg-type]


def receive_chunk(receive: Connection) -> list[Prepared]:
    """Read what ``send_chunk`` wrote (``EOFError`` once the child has ended its pipe)."""
    rows = pickle.loads(receive.recv_bytes())
    return [Prepared(BatchRow(*row), ids, {}, receive.recv_bytes()) for *row, ids in rows]


class _Sender:
    """Sends each committed chunk's batches down the pipe from a thread of its own, so that planning reads the next
    chunk while ``send_chunk`` writes the last one (the server reads it only as fast as its look-ahead empties).
    At most one chunk waits here. If the pipe breaks (the server let go), ``put`` raises, which ends planning."""

    def __init__(self, out: Connection) -> None:
        self._out = out
        self._queue: queue.Queue[list[Prepared] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pointcast-plan-send", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (items := self._queue.get()) is not None:
            if self._error is None:
                try:
                    send_chunk(self._out, items)
                except (OSError, EOFError) as exc:
                    self._error = exc  # and go on taking items, so that ``put`` never waits for ever

    def put(self, items: list[Prepared]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(items)

    def close(self) -> None:
        """Wait until what was put has been sent."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _child(url: str, run_id: str, now: str, parent: int, out: Connection, go: Connection) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        return  # the server died before this line
    db = Database(url)
    try:
        out.send(READY)
        if go.recv():
            sender = _Sender(out)
            try:
                plan_run(db, run_id, datetime.fromisoformat(now), planned=sender.put)
            finally:
                sender.close()
    except (EOFError, BrokenPipeError):
        pass  # the runner let go of the child (before it was needed, or while it planned)
    finally:
        out.close()
        db.dispose()


@dataclass
class Child:
    """A planning process: ``receive`` gets ``READY`` once it has started, then each chunk's batches; ``go`` tells
    it whether to plan (True: from the run's planning cursor) or to exit (False)."""

    process: BaseProcess
    receive: Connection
    go: Connection

    def ready(self) -> bool:
        """Whether the child has said it is ready (its message is left on the pipe)."""
        return self.receive.poll()


def spawn(url: str, run_id: str, now: datetime) -> Child:
    """Start a child process that will plan ``run_id`` when told to."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: a larger pipe, so a chunk's batches go in fewer writes and wake-ups
        with contextlib.suppress(OSError):
            fcntl.fcntl(send.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    wait, go = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(url, run_id, now.isoformat(), os.getpid(), send, wait),
        name=f"pointcast-plan-{run_id}",
        daemon=True,
    )
    process.start()
    send.close()  # the child holds the only sending end: its exit ends the pipe
    wait.close()
    return Child(process, receive, go)
