"""bench/session_path.py --tracing, tiny: traced sessions build their spans and the sink gets
them encoded as OTLP, untraced ones none (figures are the bench's business, not asserted)."""

from __future__ import annotations

from bench import session_path


async def test_traced_sessions_export_their_calls_spans() -> None:
    traced = await session_path.run_once(2, 8.0, tracing=True)
    plain = await session_path.run_once(2, 8.0, ends=True)
    assert traced["frames"] == plain["frames"] == 2 * 400
    # A root span per call, and a turn with its stage spans for each reply played.
    assert traced["spans_per_call"] >= 1 + 3  # seen: 7 (call, turn, end_of_turn, stt, ...)
    assert traced["otlp_bytes_per_call"] > 0
    assert "spans_per_call" not in plain
