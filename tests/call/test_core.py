"""``CallCore`` tested h11-style: inputs in, the exact actions and events out. No event loop,
no sockets, no tasks: every row is a plain function call on an explicit clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import structlog

from voicebridge.call.actions import (
    Close,
    ControlCall,
    Interrupt,
    Push,
    SaveState,
    Send,
    StartPipeline,
)
from voicebridge.call.context import CallContext
from voicebridge.call.core import CallCore, CallLimits, Out
from voicebridge.call.events import CallEvent
from voicebridge.call.options import SessionOptions
from voicebridge.clock import VirtualClock
from voicebridge.frames import (
    AgentAudio,
    AgentText,
    CallStarted,
    Hangup,
    MediaIn,
    OutputAudio,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from voicebridge.testing import start_message

RATE = 8000
BYTES_PER_MS = 16  # L16 at 8 kHz
ROLES = {"decode", "vad", "stt", "dialogue", "tts", "encode"}


# --- building inputs --------------------------------------------------------------------------
def start(call_id: str = "call-1") -> str:
    return start_message(call_id, "stream-1", account_id="MA1")


def media(ms: int = 20) -> str:
    payload = base64.b64encode(bytes(ms * BYTES_PER_MS)).decode()
    return json.dumps({"event": "media", "media": {"track": "inbound", "payload": payload}})


def played(name: str) -> str:
    return json.dumps({"event": "playedStream", "streamId": "stream-1", "name": name})


def audio(turn: int, text: str, ms: int = 100, last: bool = True) -> OutputAudio:
    return OutputAudio(bytes(ms * BYTES_PER_MS), turn, text, last, float(ms))


def kinds(outs: list[Out]) -> list[str]:
    """Each output as one word: ``send:<wire event>``, an event's ``kind``, or the action."""
    named: list[str] = []
    for out in outs:
        if isinstance(out, Send):
            named.append(f"send:{json.loads(out.text)['event']}")
        elif isinstance(out, CallEvent):
            named.append(out.kind)
        elif isinstance(out, Push):
            role = f"@{out.role}" if out.role else ""
            named.append(f"push:{type(out.frame).__name__}{role}")
        else:
            named.append(type(out).__name__)
    return named


def events(outs: list[Out], kind: str) -> list[Any]:
    return [out for out in outs if isinstance(out, CallEvent) and out.kind == kind]


class Call:
    """A core with its clock: ``now`` moves only when a row says so."""

    def __init__(self, options: dict[str, Any] | None = None, **core: Any) -> None:
        self.core = CallCore(SessionOptions.model_validate(options or {}), **core)
        self.now = 100.0  # clock seconds; the call starts here

    def start(self, roles: set[str] = ROLES) -> list[Out]:
        outs = self.core.receive(start(), self.now)
        assert kinds(outs) == ["StartPipeline"]
        (begin,) = outs
        assert isinstance(begin, StartPipeline) and begin.info.call_id == "call-1"
        self.core.open_context(begin.info, VirtualClock(), structlog.get_logger())
        return self.core.pipeline_started(roles, self.now)

    def media(self, ms: int = 20) -> list[Out]:
        """Caller audio moves the call's time (and the clock with it, as Plivo streams)."""
        self.now += ms / 1000
        return list(self.core.receive(media(ms), self.now))

    def wait(self, seconds: float) -> list[Out]:
        """Ticks of housekeeping while caller audio keeps flowing (silence)."""
        outs: list[Out] = []
        for _ in range(round(seconds / 0.02)):
            outs += self.media()
            outs += self.core.tick(self.now)
        return outs


# --- start --------------------------------------------------------------------------------
def test_start_asks_for_a_pipeline_then_greets_through_it() -> None:
    call = Call()
    outs = call.start()
    assert kinds(outs) == ["call_started", "push:CallStarted", "SaveState"]
    (push,) = [o for o in outs if isinstance(o, Push)]
    assert isinstance(push.frame, CallStarted) and not push.frame.resumed
    assert call.core.turns.begun == 0


def test_media_before_start_is_counted_then_refused() -> None:
    core = CallCore(limits=CallLimits(max_messages_before_start=3))
    rows = [
        (media(), ["event_before_start"]),
        (media(), []),
        (media(), ["closing_stream", "Close"]),
        (media(), []),  # the call is ending: nothing more is read
    ]
    for message, expected in rows:
        assert kinds(core.receive(message, 0.0)) == expected


def test_bad_messages_in_a_row_close_with_policy_violation() -> None:
    call = Call()
    call.start()
    core = call.core
    outs: list[Out] = []
    for _ in range(CallLimits().max_bad_messages):
        outs = core.receive("{not json", call.now)
    assert kinds(outs) == ["bad_message", "closing_stream", "Close"]
    close = outs[-1]
    assert isinstance(close, Close) and close.code == 1008
    assert close.reason == "too_many_bad_messages"


def test_media_is_pushed_and_moves_the_calls_time() -> None:
    call = Call()
    call.start()
    outs = call.core.receive(media(40), call.now)
    (push,) = outs
    assert isinstance(push, Push) and isinstance(push.frame, MediaIn)
    assert push.frame.timestamp_ms == 0.0
    assert call.core.stream_time == 0.04


# --- acknowledgements ---------------------------------------------------------------------
def test_audio_goes_out_with_its_checkpoint_and_the_ack_settles_the_turn() -> None:
    call = Call()
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.observe(AgentText("Hello there.", turn=turn), call.now)
    assert kinds(core.drain()) == ["agent_text"]
    rows: list[tuple[list[Out], list[str]]] = [
        (
            core.output(audio(turn, "Hello there.", ms=100), call.now),
            ["send:playAudio", "send:checkpoint", "checkpoint"],
        ),
        (core.receive(played("turn-9/piece-1"), call.now), ["ack_ignored"]),
        (
            core.receive(played("turn-1/piece-1"), call.now + 0.1),
            ["played", "turn_played", "SaveState"],
        ),
        (core.receive(played("turn-1/piece-1"), call.now + 0.2), ["ack_ignored"]),
    ]
    for outs, expected in rows:
        assert kinds(outs) == expected
    assert [(e.role, e.text) for e in core.ctx.history] == [("agent", "Hello there.")]
    assert core.turns.completed_through == 1
    assert core.stats.played_acks == 1 and core.stats.ignored_acks == 2


def test_an_ack_for_a_later_piece_settles_the_earlier_ones() -> None:
    call = Call()
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.output(audio(turn, "One.", last=False), call.now)
    core.output(audio(turn, "Two."), call.now)
    outs = core.receive(played("turn-1/piece-2"), call.now + 0.2)
    assert kinds(outs) == ["played", "SaveState", "played", "turn_played", "SaveState"]
    assert core.ctx.history[0].text == "One. Two."


def test_a_lost_ack_is_settled_by_the_tick_after_its_grace() -> None:
    call = Call()
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.output(audio(turn, "Lost ack."), call.now)
    assert kinds(core.tick(call.now + 1.0)) == []  # ack still due
    outs = core.tick(call.now + 0.2 + core.ledger.ack_grace_s)
    assert kinds(outs) == ["ack_lost", "played", "turn_played", "SaveState"]


# --- barge-in and false interruptions ---------------------------------------------------------
def talking_agent(call: Call, ms: int = 2000) -> int:
    """The agent is half-way through a long piece."""
    core = call.core
    turn = core.turns.begin()
    core.observe(AgentText("one two three four five six seven eight", turn=turn), call.now)
    core.drain()
    core.output(audio(turn, "one two three four five six seven eight", ms=ms), call.now)
    return turn


def test_speech_past_the_guard_clears_the_agent() -> None:
    call = Call({"barge_in": {"guard_ms": 200}})
    call.start()
    core = call.core
    talking_agent(call)
    call.wait(0.5)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    assert kinds(core.drain()) == ["speech_started"]
    outs: list[Out] = []
    for _ in range(9):  # 180 ms: inside the guard (paced audio keeps going out)
        outs += call.media()
    assert set(kinds(outs)) <= {"push:MediaIn", "send:playAudio"}
    outs = call.media()  # 200 ms
    assert kinds(outs) == ["push:MediaIn", "Interrupt", "send:clearAudio", "barge_in", "SaveState"]
    interrupt = outs[1]
    assert isinstance(interrupt, Interrupt) and interrupt.stale_through == 1
    (barge,) = events(outs, "barge_in")
    assert barge.cause == "speech" and abs(barge.reaction_s - 0.2) < 1e-9
    assert barge.heard and "one" in barge.heard.split()
    entry = core.ctx.history[0]
    assert entry.interrupted and entry.text == barge.heard
    assert core.turns.is_stale(1)


def test_speech_inside_the_guard_does_not_cut_the_agent_off() -> None:
    call = Call({"barge_in": {"guard_ms": 200}})
    call.start()
    core = call.core
    talking_agent(call)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    call.wait(0.1)
    core.observe(SpeechEnded(at_ms=core.stream_ms, started_ms=0.0), call.now)
    outs = call.wait(1.0)  # the cough is over: a whole second later still no clear
    assert "barge_in" not in kinds(outs) and core.stats.clears == 0


def test_a_false_interruption_continues_from_the_first_unheard_word() -> None:
    options = {"barge_in": {"guard_ms": 100, "false_interruption_ms": 300}}
    call = Call(options)
    call.start()
    core = call.core
    talking_agent(call, ms=4000)
    call.wait(1.0)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    cleared = call.wait(0.2)
    assert "barge_in" in kinds(cleared)
    core.observe(SpeechEnded(at_ms=core.stream_ms, started_ms=0.0), call.now)
    core.drain()
    outs = call.wait(0.4)  # no words within the window: the cough was not an interruption
    (went_on,) = events(outs, "continued")
    heard = core.ctx.history[0].text.split()
    assert went_on.turn == 2
    assert (
        went_on.text.split()
        == ["one", "two", "three", "four", "five", "six", "seven", "eight"][len(heard) :]
    )
    assert "send:playAudio" in kinds(outs)
    assert core.book.respoken == {2: 1}


def test_a_real_interruption_does_not_continue() -> None:
    call = Call({"barge_in": {"guard_ms": 100, "false_interruption_ms": 300}})
    call.start()
    core = call.core
    talking_agent(call)
    call.wait(0.5)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    call.wait(0.2)
    assert core.observe(Transcript("wait a moment", final=False), call.now)
    core.observe(SpeechEnded(at_ms=core.stream_ms, started_ms=0.0), call.now)
    outs = call.wait(1.0)
    assert "continued" not in kinds(outs)


def test_a_backchannel_over_the_agent_never_reaches_the_dialogue() -> None:
    call = Call({"barge_in": {"min_words": 1}})
    call.start()
    core = call.core
    talking_agent(call)
    assert core.observe(Transcript("uh-huh", final=True), call.now) is False
    assert kinds(core.drain()) == ["backchannel"]


# --- what the caller said ---------------------------------------------------------------------
def test_only_what_the_dialogue_received_is_the_callers_words() -> None:
    call = Call()
    call.start()
    core = call.core
    assert core.observe(Transcript("my card is 4111 1111", final=True), call.now)
    assert kinds(core.drain()) == []  # transcribed, not yet said: no text recorded
    outs = core.caller_said(Transcript("my card is [card]", final=True), call.now)
    assert kinds(outs) == ["caller_said", "SaveState"]
    assert [(e.role, e.text) for e in core.ctx.history] == [("caller", "my card is [card]")]
    assert core.caller_said(Transcript("interim", final=False), call.now) == []


# --- idle reprompts and hanging up ----------------------------------------------------------
def test_silence_is_reprompted_then_the_agent_says_goodbye_and_hangs_up() -> None:
    call = Call({"idle_reprompt_s": 2, "idle_reprompts": 1})
    call.start()
    core = call.core
    outs = call.wait(2.0)
    assert kinds(outs).count("reprompt") == 1
    assert "push:AgentText" in kinds(outs)
    core.receive(played("x"), call.now)  # nothing played: the reprompt is still "live"
    # The reprompt's turn is settled by the speaker's audio playing; say nothing came back:
    core.turns.completed(core.turns.begun)
    outs = call.wait(2.0)
    assert "idle_goodbye" in kinds(outs)
    pushes = [o for o in outs if isinstance(o, Push)]
    assert isinstance(pushes[-1].frame, Hangup) and pushes[-1].frame.reason == "idle"


def test_a_hang_up_waits_for_the_last_words_then_calls_the_rest_api() -> None:
    call = Call(has_call_control=True)
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.output(audio(turn, "Goodbye."), call.now)
    rows: list[tuple[list[Out], list[str]]] = [
        (core.output(Hangup("agent"), call.now), ["call_action_requested", "SaveState"]),
        (
            core.receive(played("turn-1/piece-1"), call.now + 0.1),
            ["played", "turn_played", "SaveState", "ControlCall"],
        ),
    ]
    for outs, expected in rows:
        assert kinds(outs) == expected
    control = rows[-1][0][-1]
    assert isinstance(control, ControlCall) and control.action == Hangup("agent")
    outs = core.control_done(Hangup("agent"), call.now, outcome="hung_up")
    assert kinds(outs) == ["rest_hangup", "Close"]
    close = outs[-1]
    assert isinstance(close, Close) and close.reason == "hangup:agent" and close.code == 1000


def test_without_rest_access_a_hang_up_closes_the_stream() -> None:
    call = Call(has_call_control=False)
    call.start()
    outs = call.core.output(Hangup("agent"), call.now)
    assert kinds(outs) == ["call_action_requested", "SaveState", "Close"]


def test_a_barge_in_cancels_a_pending_hang_up() -> None:
    call = Call(has_call_control=True)
    call.start()
    core = call.core
    talking_agent(call)
    core.output(Hangup("agent"), call.now)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    outs = call.wait(0.3)
    assert "call_action_cancelled_by_barge_in" in kinds(outs)
    assert core.pending_action is None and "ControlCall" not in kinds(outs)


# --- resuming a dropped call ------------------------------------------------------------------
def test_a_snapshot_resumes_with_the_unheard_rest_of_the_reply() -> None:
    call = Call()
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.observe(AgentText("First part.", turn=turn, last=False), call.now)
    core.observe(AgentText("Second part.", turn=turn), call.now)
    core.drain()
    core.output(audio(turn, "First part.", last=False), call.now)
    core.output(audio(turn, "Second part."), call.now)
    core.receive(played("turn-1/piece-1"), call.now + 0.1)
    snapshot = core.snapshot(call.now + 0.1)
    assert snapshot is not None
    assert [(h.role, h.text) for h in snapshot.history] == [("agent", "First part.")]
    assert [(p.turn, p.text) for p in snapshot.pending] == [(1, "Second part.")]

    again = Call()
    outs = again.core.receive(start(), again.now)
    (begin,) = outs
    assert isinstance(begin, StartPipeline)
    again.core.open_context(begin.info, VirtualClock(), structlog.get_logger())
    again.core.restore(snapshot, wall_now=snapshot.saved_at)
    outs = again.core.pipeline_started(ROLES, again.now, snapshot)
    assert kinds(outs) == [
        "call_started",
        "push:CallStarted",
        "agent_text",
        "push:AgentText",
        "call_resumed",
        "SaveState",
    ]
    text = [o.frame for o in outs if isinstance(o, Push) and isinstance(o.frame, AgentText)]
    assert [(f.text, f.turn) for f in text] == [("Second part.", 2)]
    assert again.core.epoch == 1 and again.core.book.respoken == {2: 1}
    started = next(o.frame for o in outs if isinstance(o, Push))
    assert isinstance(started, CallStarted) and started.resumed


def test_save_state_marks_every_change_worth_keeping() -> None:
    call = Call()
    outs = call.start()
    assert any(isinstance(o, SaveState) for o in outs)


# --- late replies ---------------------------------------------------------------------------
def test_a_late_reply_gets_a_filler_that_answers_nothing() -> None:
    call = Call({"replies": {"filler_after_ms": 500, "reply_timeout_ms": 3000}})
    call.start()
    core = call.core
    call.wait(0.2)
    core.observe(SpeechEnded(at_ms=core.stream_ms, started_ms=0.0), call.now)
    core.observe(Transcript("when do you open", final=True), call.now)
    core.caller_said(Transcript("when do you open", final=True), call.now)
    outs = call.wait(0.6)
    (filler,) = events(outs, "filler")
    pushes = [o for o in outs if isinstance(o, Push)]
    assert [p.role for p in pushes if isinstance(p.frame, AgentText)] == [
        "tts"
    ]  # past the dialogue
    turn = core.turns.begin()  # the real reply arrives
    core.observe(AgentText("We open at nine.", turn=turn), call.now)
    assert core.turns.timing(filler.turn).caller_end_s is None
    assert core.turns.timing(turn).caller_end_s is not None  # the reply answers the caller
    assert core.replies.is_filler(filler.turn) and not core.replies.is_filler(turn)


def test_a_reply_that_never_comes_times_out_and_is_cancelled() -> None:
    call = Call({"replies": {"filler_after_ms": None, "reply_timeout_ms": 1000}})
    call.start()
    core = call.core
    core.caller_said(Transcript("hello", final=True), call.now)
    outs = call.wait(1.1)
    named = kinds(outs)
    assert "reply_timeout" in named
    after = named[named.index("reply_timeout") :]
    assert after[:3] == ["reply_timeout", "Interrupt", "agent_text"]
    fallback = [o.frame for o in outs if isinstance(o, Push) and isinstance(o.frame, AgentText)]
    assert " ".join(f.text for f in fallback) == SessionOptions().fallback_text


# --- a speech-to-speech stage: replies as audio with their own text, late caller words ----------
S2S_ROLES = {"decode", "speech_to_speech", "encode"}


def pcm(ms: int) -> AgentAudio:
    import numpy as np

    return AgentAudio(np.zeros(ms * 8, np.int16), turn=0)


def test_a_reply_without_text_frames_is_known_by_the_text_of_its_audio() -> None:
    call = Call()
    call.start(S2S_ROLES)
    core = call.core
    assert core.can_speak  # the model says the call's own lines
    turn = core.ctx.begin_turn()
    for text, last in (("We open", False), ("at seven.", True)):
        frame = AgentAudio(pcm(100).pcm, turn=turn, text=text, last=last)
        assert core.observe(frame, call.now)
        said = events(list(core.drain()), "agent_text")
        assert [(e.turn, e.text, e.last) for e in said] == [(turn, text, last)]
    assert core.turns.newest_seen == turn


def test_a_speaker_with_text_frames_is_not_reported_twice() -> None:
    call = Call()
    call.start()
    core = call.core
    turn = core.turns.begin()
    core.observe(AgentText("Hello.", turn=turn), call.now)
    core.drain()
    core.observe(AgentAudio(pcm(100).pcm, turn=turn, text="Hello."), call.now)
    assert events(list(core.drain()), "agent_text") == []


def test_answered_words_are_never_a_backchannel_and_go_before_their_reply() -> None:
    call = Call({"barge_in": {"min_words": 1}})
    call.start(S2S_ROLES)
    core = call.core
    turn = core.ctx.begin_turn()
    core.output(audio(turn, "Sure, go ahead."), call.now)
    core.receive(played(f"turn-{turn}/piece-1"), call.now + 0.1)
    heard = Transcript("uh-huh", final=True, reply_turn=turn)
    assert core.observe(heard, call.now) is True  # the model heard it: nothing holds it back
    core.caller_said(heard, call.now)
    assert [(h.role, h.text) for h in core.ctx.history] == [
        ("caller", "uh-huh"),
        ("agent", "Sure, go ahead."),
    ]


def test_the_history_takes_late_caller_words_before_the_turn_that_answers_them() -> None:
    ctx = CallContext()
    ctx.add_caller_text("hello")
    ctx.agent_entry(1).text = "Hi!"
    ctx.agent_entry(2).text = "How can I help?"
    ctx.add_caller_text("my order", before_turn=2)  # turn 2 began to answer it
    ctx.add_caller_text("thanks", before_turn=9)  # no reply yet: at the end
    ctx.add_caller_text("a keypad entry", before_turn=None)
    assert [(h.role, h.text) for h in ctx.history] == [
        ("caller", "hello"),
        ("agent", "Hi!"),
        ("caller", "my order"),
        ("agent", "How can I help?"),
        ("caller", "thanks"),
        ("caller", "a keypad entry"),
    ]


def test_the_heard_milliseconds_of_a_turn_are_the_ledgers() -> None:
    """Acknowledged pieces count whole; at a barge-in the piece playing counts up to the clear,
    exactly the time that makes the history's heard words."""
    call = Call({"barge_in": {"guard_ms": 200}})
    call.start(S2S_ROLES)
    core = call.core
    turn = core.ctx.begin_turn()
    for index in range(4):  # four 300 ms pieces
        core.output(audio(turn, f"piece {index}", ms=300, last=index == 3), call.now)
    call.wait(0.4)
    core.receive(played(f"turn-{turn}/piece-1"), call.now)
    assert core.ctx.heard_audio.ms(turn) == 300.0
    call.wait(0.3)
    core.observe(SpeechStarted(at_ms=core.stream_ms), call.now)
    outs = call.wait(0.2)
    (barge,) = events(outs, "barge_in")
    # Piece 1 (300 ms) acked at 400 ms: the playhead is re-anchored there, so piece 2 is taken
    # to have played from 400 to 700 ms (its ack still in flight: played by estimate), and
    # piece 3 had played 200 ms when the clear went out at 900 ms.
    assert round(core.ctx.heard_audio.ms(turn)) == 300 + 300 + 200
    assert kinds(outs).count("send:clearAudio") == 1 and barge.stale_through == turn
