"""Metrics of several worker processes seen as one service (``serve --workers N``).

With N workers, each ``/metrics`` scrape is answered by whichever worker the kernel hands the
connection to. So that one scrape speaks for the whole service, the workers keep their metrics in
prometheus_client's multiprocess mode: each worker writes its values to memory-mapped files in one
directory, and the worker that answers a scrape reads and adds up every worker's files.

The supervisor makes that directory before it starts the workers (``shared_metrics_dir``): the
workers inherit ``PROMETHEUS_MULTIPROC_DIR``, which prometheus_client reads when it is first
imported, and the directory is removed when the service stops. A single-process service never
sets it and keeps its per-app registries.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import structlog
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = structlog.get_logger("voicebridge.observe.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Files of gauges whose value is dropped when their process ends ("livesum" and friends).
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The shared directory when this process's metrics live in it, else None.

    prometheus_client chose its value storage when it was imported: the directory counts only
    when the variable was set by then (a worker started by ``serve --workers N``)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or values.ValueClass is values.MutexValue:
        return None
    return path


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """For the supervisor of ``serve --workers N``, around starting the workers: a fresh,
    empty directory for this service's metrics (stale files of an earlier run would be counted
    again), handed down in ``PROMETHEUS_MULTIPROC_DIR``, removed on exit.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` (a writable volume on a read-only root
    filesystem) is the parent of the directory made here."""
    previous = os.environ.get(MULTIPROC_ENV)
    path = tempfile.mkdtemp(prefix="voicebridge-metrics-", dir=previous or None)
    os.environ[MULTIPROC_ENV] = path
    log.info("shared_metrics_dir", path=path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def process_gone(pid: int) -> None:
    """Drop a finished worker's live gauges (its calls are no longer active). Its counters and
    histograms stay: what it counted still happened."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(pid, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def reap_dead_workers(path: str) -> list[int]:
    """Drop the live gauges of workers that died without saying so (a crash, a kill -9); the
    supervisor starts a new worker under a new pid."""
    dead = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(os.path.basename(name))
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        mark_process_dead(pid, path)
        log.info("metrics_worker_gone", worker_pid=pid)
    return sorted(dead)


def service_exposition(path: str) -> bytes:
    """The Prometheus text of every worker's metrics added up: counters and histograms summed
    over all workers that ever ran, gauges as their ``multiprocess_mode`` says."""
    reap_dead_workers(path)
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path)
    return generate_latest(registry)
