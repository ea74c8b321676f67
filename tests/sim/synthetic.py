"""A synthetic call report with its audio, for the call page's tests: no service, no models."""

from __future__ import annotations

import numpy as np

from voicebridge.frames import PCM
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport
from voicebridge.sim.signals import speech_like

RATE = 8000
EVIL = "<script>alert(1)</script>"


def synthetic_call(duration_s: float = 60.0, *, evil: bool = False) -> tuple[CallReport, PCM, PCM]:
    """A call with a turn every 6 s: 1.5 s of caller speech, an answer after ~0.8 s, a barge-in
    and clear in every third turn."""
    n = round(duration_s * RATE)
    caller = np.zeros(n, np.int16)
    heard = np.zeros(n, np.int16)
    turns: list[TurnReport] = []
    markers: list[MarkerEvent] = []
    checkpoints: list[CheckpointReport] = []
    history: list[dict[str, object]] = []
    for i, start in enumerate(np.arange(0.5, duration_s - 4.0, 6.0)):
        start = float(start)
        end = start + 1.5
        s0 = round(start * RATE)
        caller[s0 : s0 + round(1.5 * RATE)] = speech_like(1.5, RATE)
        said = f"caller line {i} & <b>more</b>"
        transcript = EVIL if evil and i == 1 else f"caller line {i} & <b>more</b> heard"
        played = end + 0.8
        interrupted = i % 3 == 2
        reply_s = 1.2 if interrupted else 2.5
        p0 = round(played * RATE)
        heard[p0 : p0 + round(reply_s * RATE)] = speech_like(reply_s, RATE, f0=210.0) // 2
        texts = [f"Agent reply {i}, part one.", f"And part <two> of reply {i}."]
        number = i + 1  # the call's turn numbers count from 1
        turns.append(
            TurnReport(
                i,
                said,
                start,
                end,
                transcript,
                texts,
                texts[0],
                played - 0.1,
                played,
                played - end,
                interrupted,
                agent_turns=[number],
            )
        )
        markers += [
            MarkerEvent(start, "caller_speech_start", ""),
            MarkerEvent(end, "caller_speech_end", ""),
            MarkerEvent(end + 0.3, "transcript", transcript),
            MarkerEvent(end + 0.5, "agent_text", texts[0], number),
            MarkerEvent(end + 0.7, "agent_text", texts[1], number),
            MarkerEvent(played, "played", f"turn-{number}/piece-1", number),
        ]
        checkpoints.append(CheckpointReport(f"turn-{number}/piece-1", end + 0.6, played + 1.0))
        if interrupted:
            checkpoints.append(CheckpointReport(f"turn-{number}/piece-2", end + 0.8, None, True))
            markers += [
                MarkerEvent(played + 1.2, "barge_in", f"turn {i}"),
                MarkerEvent(played + 1.25, "clear", ""),
            ]
        else:
            checkpoints.append(CheckpointReport(f"turn-{number}/piece-2", end + 0.8, played + 2.5))
        history += [
            {"role": "caller", "text": transcript, "turn": None, "interrupted": False},
            {"role": "agent", "text": texts[0], "turn": number, "interrupted": interrupted},
        ]
    markers += [MarkerEvent(duration_s / 2, "dtmf", "5"), MarkerEvent(duration_s, "close", "1000")]
    markers.sort(key=lambda m: m.t)
    report = CallReport(
        pipeline="demo <pipe>",
        codec="audio/x-mulaw",
        sample_rate=RATE,
        mode="fast",
        duration_s=duration_s,
        turns=turns,
        checkpoints=checkpoints,
        markers=markers,
        history=history,
        events=[{"t": 0.0, "event": "start"}],
        barge_ins=[{"t": m.t} for m in markers if m.kind == "barge_in"],
        closed_by="caller",
        close_code=1000,
        close_reason="call ended",
    )
    return report, caller, heard
