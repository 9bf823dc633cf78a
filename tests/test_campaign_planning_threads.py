"""Runs whose planning waits do not keep others from being planned.

Planning hands each committed chunk of batches to delivery and waits while its run has a full read-ahead: a run
paced by MessagesPerSecond keeps its planning waiting for as long as it sends. That wait holds a thread, and planning
used Python's default thread pool, which has ``os.cpu_count() + 4`` threads (6 on a 2-core machine): with that
many paced runs, every other campaign waited for one of them to finish before its planning could start.

The server runs with one delivery slot (a read-ahead of 4 batches per run), so each paced campaign below (10 batches,
one a second) keeps its planning waiting for about 6 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import running_server
from tests.support.campaigns import (
    Receiver,
    audience_segment,
    endpoint,
    load,
    new_app,
    small_campaign_time,
    wait_for,
    webhook_campaign,
)
from tests.support.server import Server

PACED = (os.cpu_count() or 1) + 5  # more than the default pool's threads


@pytest.fixture(scope="module")
def server(backend: str, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        backend,
        tmp_path_factory.mktemp(f"planning-threads-{backend}"),
        ca_bundle,
        POINTCAST_DELIVERY_CONCURRENCY="1",
        POINTCAST_SCHEDULER_INTERVAL="0.1",
    ) as srv:
        yield srv


def test_paced_runs_waiting_to_hand_batches_on_do_not_hold_up_planning(server, pinpoint, test_ca) -> None:
    with Receiver(test_ca) as paced_rx:
        app_id = new_app(pinpoint, "paced")
        load(pinpoint, app_id, [endpoint(f"ep-{i:03d}") for i in range(500)], threads=4)
        segment = audience_segment(pinpoint, app_id)
        for _ in range(PACED):
            schedule = {"StartTime": "IMMEDIATE"}
            webhook_campaign(pinpoint, app_id, segment, paced_rx.url, schedule, Limits={"MessagesPerSecond": 50})
        wait_for(lambda: paced_rx.post_count() >= PACED, timeout=60, what="every paced campaign sending")
        took = small_campaign_time(server, pinpoint, test_ca)
        assert took < 3.0, f"the small campaign took {took:.1f} s with {PACED} paced ones planning"
        assert paced_rx.post_count() < PACED * 10  # the paced ones were still sending
