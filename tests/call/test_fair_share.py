"""Fair share in the call core: caller audio beyond real time (plus a burst) is dropped and
counted, a sustained flood closes the socket. Rows on an explicit clock, as ``test_core``."""

from __future__ import annotations

import pytest

from voicebridge.call.actions import Close, Push
from voicebridge.call.core import CallLimits
from voicebridge.call.fair_share import FairShare

from .test_core import Call, events, kinds, media

FAST = CallLimits(media_burst_s=0.1, media_flood_s=0.2)  # 5 frames of burst, 10 of flood


def pushes(outs: list) -> int:
    return sum(1 for out in outs if isinstance(out, Push))


def test_a_caller_at_real_time_is_never_dropped() -> None:
    call = Call(limits=FAST)
    call.start()
    outs = call.wait(3.0)  # media and ticks, 20 ms apart
    assert events(outs, "frames_dropped") == [] and call.core.stats.flood_dropped == 0
    assert call.core.stats.media == 150


def test_audio_beyond_real_time_and_the_burst_is_dropped_and_reported_once_a_second() -> None:
    call = Call(limits=CallLimits(media_burst_s=0.1, media_flood_s=10.0))
    call.start()
    core, now = call.core, call.now
    taken = [pushes(list(core.receive(media(), now))) for _ in range(10)]  # no time passes
    assert taken == [1] * 6 + [0] * 4  # 100 ms of burst (and the frame that reaches it)
    assert core.stats.media == 6 and core.stats.flood_dropped == 4
    assert core.stream_ms == 120  # dropped audio does not move the call's timeline
    (report,) = events(list(core.tick(now)), "frames_dropped")
    assert (report.reason, report.count) == ("flood", 4)
    core.receive(media(), now)
    assert events(list(core.tick(now + 0.5)), "frames_dropped") == []  # once a second at most
    (rest,) = events(list(core.tick(now + 1.0)), "frames_dropped")
    assert rest.count == 1


def test_a_backlog_after_a_stall_catches_up_without_drops() -> None:
    call = Call(limits=FAST)
    call.start()
    call.now += 2.0  # the network stalled: 2 s of audio arrive at once
    outs = [out for _ in range(100) for out in call.core.receive(media(), call.now)]
    assert pushes(outs) == 100 and call.core.stats.flood_dropped == 0


def test_a_sustained_flood_closes_the_socket_with_1008() -> None:
    call = Call(limits=FAST)
    call.start()
    rows = [kinds(list(call.core.receive(media(), call.now))) for _ in range(16)]
    assert rows[:6] == [["push:MediaIn"]] * 6
    assert rows[6:15] == [[]] * 9  # dropped quietly
    assert rows[15] == ["frames_dropped", "closing_stream", "Close"]  # 200 ms dropped
    outs = list(call.core.receive(media(), call.now))  # nothing more
    assert outs == []
    finished = list(call.core.finished("media_flood"))
    assert kinds(finished) == ["call_ended"] and finished[0].stats["flood_dropped"] == 10


def test_the_close_names_the_flood() -> None:
    call = Call(limits=FAST)
    call.start()
    outs = [out for _ in range(16) for out in call.core.receive(media(), call.now)]
    (close,) = [out for out in outs if isinstance(out, Close)]
    assert close.code == 1008 and close.close_reason.startswith("media_flood: 0.2 s")


def test_the_rest_of_the_drops_is_reported_when_the_call_ends() -> None:
    call = Call(limits=CallLimits(media_burst_s=0.1, media_flood_s=10.0))
    call.start()
    for _ in range(8):
        call.core.receive(media(), call.now)
    outs = list(call.core.finished("socket_closed"))
    assert kinds(outs) == ["frames_dropped", "call_ended"] and outs[0].count == 2


def test_a_clock_that_follows_the_audio_never_throttles() -> None:
    """A stream clock (simulator, tests): the driver moves the clock with each frame."""
    call = Call(limits=FAST)
    call.start()
    origin = call.now
    for _ in range(500):  # 10 s of audio as fast as the peer can send it
        now = origin + call.core.stream_time
        call.core.receive(media(), now)
    assert call.core.stats.flood_dropped == 0 and call.core.stats.media == 500


def test_fair_share_compares_the_audio_before_the_frame() -> None:
    share = FairShare(burst_s=0.0, flood_s=1.0)
    assert share.admits(0.0, 0.0)  # a first frame larger than the burst is still taken
    assert not share.admits(20.0, 0.0)
    assert share.admits(20.0, 0.02)


def test_the_call_clock_keeps_the_lead_caller_audio_gave_it_and_runs_on_at_real_time() -> None:
    """``start`` came late (or audio came in a burst): the clock jumps to the audio received and
    runs on from there. It used to stand still until real time caught up, so a piece sent
    then was stamped later than Plivo could have started playing it."""
    call = Call()
    call.start()
    core, now = call.core, call.now
    for _ in range(5):
        core.receive(media(), now)  # 100 ms of audio at once: 100 ms ahead of real time
    assert core.call_time(now) == 0.1
    assert core.call_time(now + 0.05) == pytest.approx(0.15)  # on at real time, not stuck
    assert core.call_time(now + 0.5) == pytest.approx(0.6)
    # The fair share still measures against real time since start: the lead is not free burst.
    assert core.stats.flood_dropped == 0
