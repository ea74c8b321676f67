"""`voicebridge serve --workers 2`: one /metrics scrape, whichever worker answers it, counts
every worker's calls; and every line of the supervisor and both workers is JSON."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .library_stage import LOGGER
from .serve_process import ServeProcess
from .test_serve_json_logs import check_lines

# Every metric of a single process is in the shared scrape too, but for provider_errors: its
# labels are only known at the first error, and until then it has no series in either mode.
FAMILIES = {
    "voicebridge_active_calls",
    "voicebridge_calls",
    "voicebridge_turn_latency_seconds",
    "voicebridge_bargein_reaction_seconds",
    "voicebridge_stage_first_output_seconds",
    "voicebridge_dropped_frames",
    "voicebridge_event_loop_lag_seconds",
    "voicebridge_resume_events",
    "voicebridge_streams_refused",
}
MAX_CALLS = 40  # the kernel picks the worker: calls go on until both took some
BATCH = 4


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def calls_by_worker(records: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Which worker (pid) logged each call's start."""
    out: dict[int, set[str]] = {}
    for record in records:
        if record["event"] == "call_started":
            out.setdefault(record["pid"], set()).add(record["call_id"])
    return out


async def scrape(client: httpx.AsyncClient) -> dict[Any, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert {f.name for f in text_string_to_metric_families(response.text)} >= FAMILIES
    return samples(response.text)


async def test_one_scrape_counts_every_workers_calls(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, "--workers", "2")
    made: list[str] = []
    try:
        workers = await serve.worker_pids(2)
        while len(calls_by_worker(serve.records())) < 2:
            assert len(made) < MAX_CALLS, f"every call went to one worker: {made}"
            batch = [f"mw-call-{len(made) + i}" for i in range(BATCH)]
            await asyncio.gather(*(serve.call(call_id) for call_id in batch))
            made += batch
        by_worker = calls_by_worker(serve.records())
        assert set(by_worker) == workers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        limits = httpx.Limits(max_keepalive_connections=0)  # each scrape: any worker
        async with httpx.AsyncClient(base_url=serve.base, limits=limits, timeout=5) as client:
            while True:  # until both workers saw their calls' sockets close
                values = await scrape(client)
                ended = values[("voicebridge_calls_total", (("outcome", "caller_hangup"),))]
                if ended == len(made) and values[("voicebridge_active_calls", ())] == 0:
                    break
                assert ended <= len(made), values
                assert loop.time() < deadline, f"{ended} of {len(made)} calls counted"
                await asyncio.sleep(0.05)
            for _ in range(6):  # every scrape, whichever worker answers it, says the same
                values = await scrape(client)
                calls = {
                    dict(labels)["outcome"]: value
                    for (name, labels), value in values.items()
                    if name == "voicebridge_calls_total"
                }
                assert calls["caller_hangup"] == len(made)
                assert sum(calls.values()) == len(made)
                assert values[("voicebridge_active_calls", ())] == 0
                # Counters kept as plain ints in each worker are shared too (at 0 here).
                assert values[("voicebridge_resume_events_total", (("event", "resumed"),))] == 0
                assert ("voicebridge_event_loop_lag_seconds_count", ()) in values
    finally:
        code = serve.stop()
    assert code == 0, "\n".join(serve.lines[-30:])
    records = serve.records()  # the supervisor's lines and both workers': every one JSON
    check_lines(records)
    pids = {r["pid"] for r in records}
    assert workers < pids  # and the supervisor
    supervisor = pids - workers
    assert any(r["logger"] == "uvicorn.error" for r in records if r["pid"] in supervisor)
    for pid in workers:
        mine = [r for r in records if r["pid"] == pid]
        assert {"uvicorn.error", "voicebridge.server"} <= {r["logger"] for r in mine}
    library = [r for r in records if r["logger"] == LOGGER]
    assert sorted(r["call_id"] for r in library) == sorted(made)
    assert all(r["stream_id"] == f"{r['call_id']}-stream" for r in library)


async def test_a_killed_workers_calls_leave_the_active_count(tmp_path: Path) -> None:
    """A worker killed mid-call (no clean stop to take its calls out): the next scrape, by the
    worker still alive, finds its pid gone and stops counting its live call."""
    serve = ServeProcess(tmp_path, "--workers", "2")
    try:
        await serve.worker_pids(2)
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=serve.base, limits=limits, timeout=5) as client,
            serve.live_call("kill-call") as ws,
        ):
            deadline = loop.time() + 10
            while not (taken := calls_by_worker(serve.records())):
                assert loop.time() < deadline, "the call's start was never logged"
                await asyncio.sleep(0.02)
            [victim] = taken
            for _ in range(4):  # whichever worker answers, the call is counted once
                assert (await scrape(client))[("voicebridge_active_calls", ())] == 1
            os.kill(victim, signal.SIGKILL)
            await ws.wait_closed()  # the kernel reset the dead worker's socket
            deadline = loop.time() + 10
            while (await scrape(client))[("voicebridge_active_calls", ())] != 0:
                assert loop.time() < deadline, "the dead worker's call is still counted"
                await asyncio.sleep(0.05)
        assert any(
            r["logger"] == "voicebridge.observe.metrics" and r["event"] == "metrics_worker_gone"
            and r["worker_pid"] == victim and r["pid"] != victim
            for r in serve.records()
        )  # fmt: skip
    finally:
        serve.stop()
