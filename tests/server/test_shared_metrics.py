"""The supervisor's side of shared metrics (``serve --workers N``): a fresh directory per
service, and the live gauges of a worker that died dropped. Two real workers summing their
calls into one scrape: ``tests/e2e/test_workers_observe.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from voicebridge.observe.metrics import _MirroredCounters
from voicebridge.observe.shared_metrics import (
    MULTIPROC_ENV,
    multiprocess_dir,
    reap_dead_workers,
    shared_metrics_dir,
)


def test_each_service_gets_a_fresh_directory_removed_on_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with shared_metrics_dir() as path:
        assert os.environ[MULTIPROC_ENV] == path and os.listdir(path) == []
        # prometheus_client in this process was imported without it: no shared files here.
        assert multiprocess_dir() is None
    assert not os.path.exists(path) and MULTIPROC_ENV not in os.environ
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # the operator's writable volume
    with shared_metrics_dir() as path:
        assert Path(path).parent == tmp_path
    assert os.environ[MULTIPROC_ENV] == str(tmp_path) and list(tmp_path.iterdir()) == []


def test_a_dead_workers_live_gauges_are_dropped_and_its_counts_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names no process now
    for pid in (gone.pid, os.getpid()):
        for name in (f"gauge_livesum_{pid}.db", f"counter_{pid}.db", f"histogram_{pid}.db"):
            (tmp_path / name).write_bytes(b"")
    assert reap_dead_workers(str(tmp_path)) == [gone.pid]
    left = {p.name for p in tmp_path.iterdir()}
    assert f"gauge_livesum_{gone.pid}.db" not in left
    assert {f"counter_{gone.pid}.db", f"histogram_{gone.pid}.db"} <= left
    assert f"gauge_livesum_{os.getpid()}.db" in left


def test_counts_kept_as_ints_reach_the_shared_counter_by_their_growth() -> None:
    """What a worker counts as plain ints is added to a real counter, so other workers'
    scrapes can read it; each sync adds only what grew since the last."""
    registry = CollectorRegistry()
    counter = Counter("voicebridge_things", "Things.", ["reason"], registry=registry)
    counts = {"a": 0, "b": 2}
    mirror = _MirroredCounters(counter, lambda: counts)
    mirror.sync()
    counts["a"] += 3
    mirror.sync()
    mirror.sync()
    counts["c"] = 1
    mirror.sync()
    values = {
        reason: registry.get_sample_value("voicebridge_things_total", {"reason": reason})
        for reason in "abc"
    }
    assert values == {"a": 3, "b": 2, "c": 1}
