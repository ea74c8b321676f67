"""A turn-taking corpus: phone callers who pause mid-sentence, and callers who are done.

Each sentence is spoken whole by the offline Piper voice (several pitches and speeds for several
"speakers"), so a pause is cut in exactly between two words (Piper's alignments) and the speech
around it keeps the prosody of a sentence that goes on, as a caller who stops to think does. A
paused utterance is the same audio with ``pause_ms`` of silence inserted after word ``pause_after``,
where a person is clearly not done:

- ``function``: after a word a sentence cannot end on ("a table for ... four people");
- ``content``: after a content word whose sentence is not finished ("could you tell me ... what
  time", "I need to cancel ... my appointment", "my name is Sarah ... Johnson");
- ``digits``: inside a digit string or a number ("five five one ... two seven three", "the
  twenty ... third of May", "forty two ... Harbor Street").

Complete utterances are questions, statements, digit strings read out whole and short answers
("yes", "no thanks", "five five one two"). Each utterance is led by ``lead_s`` of silence and
followed by ``tail_s``, and goes through the phone codec: 8 kHz μ-law (encoded and decoded) or
16 kHz L16. Deterministic: Piper's noise is off, so the same call gives the same samples.

Used by ``bench/end_of_turn.py``::

    from bench.turn_corpus import make_corpus
    for utt in make_corpus(codec="mulaw"):
        utt.pcm, utt.rate, utt.kind, utt.category, utt.pause_ms, utt.speech_end_ms
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode
from voicebridge.frames import PCM

# (sentence, index of the word after which the caller pauses, category)
PAUSED: tuple[tuple[str, int, str], ...] = (
    ("I'd like to book a table for four people tomorrow evening.", 6, "function"),
    ("Can I order a birthday cake for my daughter on Saturday?", 7, "function"),
    ("My order number is five five one two seven.", 3, "function"),
    ("I want to know if you are open on Sunday morning.", 4, "function"),
    ("The delivery should go to forty two Harbor Street.", 4, "function"),
    ("Do you have any gluten free bread or cakes?", 3, "function"),
    ("My date of birth is the fourteenth of March.", 7, "function"),
    ("Could you tell me what time you close today?", 3, "content"),
    ("I need to cancel my appointment for Friday.", 3, "content"),
    ("My name is Sarah Johnson and I have a booking.", 3, "content"),
    ("The cake should say happy birthday Emma.", 4, "content"),
    ("I placed an order last week and it still has not arrived.", 8, "content"),
    ("My order number is five five one two seven.", 6, "digits"),
    ("My phone number is five five five one two three four.", 6, "digits"),
    ("The card ends in four four one two.", 5, "digits"),
    ("We live at forty two Harbor Street.", 4, "digits"),
    ("Can I book for the twenty third of May?", 5, "digits"),
)
# (sentence, category)
COMPLETE: tuple[tuple[str, str], ...] = (
    ("What time do you open tomorrow?", "question"),
    ("Where are you located?", "question"),
    ("Do you deliver on weekends?", "question"),
    ("Is there parking near the shop?", "question"),
    ("Has my order been shipped yet?", "question"),
    ("Can I speak to a manager please?", "question"),
    ("Could you tell me what time you close today?", "question"),
    ("I'd like to book a table for four people.", "statement"),
    ("I want to order a birthday cake.", "statement"),
    ("I need to cancel my appointment for Friday.", "statement"),
    ("My name is Sarah Johnson.", "statement"),
    ("Thank you, that's all.", "statement"),
    ("My order number is five five one two seven.", "digits"),
    ("My phone number is five five five one two three four.", "digits"),
    ("Five five one two.", "digits"),
    ("Seven seven one two.", "digits"),
    ("Yes.", "short"),
    ("No thanks.", "short"),
    ("Yes please.", "short"),
    ("That's right.", "short"),
    ("Okay.", "short"),
)
# (pitch in semitones, length scale): different-sounding callers, some slower
SPEAKERS: tuple[tuple[float, float], ...] = ((-2.0, 1.0), (2.0, 1.1), (-4.0, 1.25))
PAUSES_MS: tuple[int, ...] = (500, 800, 1200)
# the phone codecs: (name, pipeline rate)
CODECS: dict[str, int] = {"mulaw": 8000, "l16": 16000}


@dataclass(frozen=True)
class Utterance:
    """One caller utterance, with where its speech ends and where (if anywhere) it pauses."""

    name: str
    text: str
    kind: str  # "complete" or "paused"
    category: str  # paused: function, content, digits; complete: question, statement, ...
    codec: str  # "mulaw" (8 kHz) or "l16" (16 kHz)
    rate: int
    pcm: PCM = field(repr=False)
    speech_end_ms: float  # end of the last word, from the start of ``pcm``
    pause_ms: int = 0  # "paused": the silence inserted mid-sentence
    pause_at_ms: float | None = None  # "paused": where that silence begins
    words_before_pause: str = ""

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.pcm.size / self.rate


def _speak(text: str, rate: int, pitch: float, length_scale: float) -> tuple[PCM, list[float]]:
    from voicebridge.stages.tts.piper import synthesize_timed

    pcm, ends = synthesize_timed(
        text, rate, pitch_semitones=pitch, length_scale=length_scale, noise_scale=0.0, noise_w=0.0
    )
    if ends is None or len(ends) != len(text.split()):
        raise RuntimeError(f"turn_corpus: the voice gave no word timings for {text!r}")
    return pcm, list(ends)


def _through(codec: str, pcm: PCM) -> PCM:
    """What the far end decodes: μ-law is lossy, L16 is not."""
    return mulaw_decode(mulaw_encode(pcm)) if codec == "mulaw" else pcm


def make_corpus(
    codec: str = "mulaw",
    *,
    speakers: Sequence[tuple[float, float]] = SPEAKERS,
    pauses_ms: Iterable[int] = PAUSES_MS,
    paused: Sequence[tuple[str, int, str]] = PAUSED,
    complete: Sequence[tuple[str, str]] = COMPLETE,
    lead_s: float = 0.4,
    tail_s: float = 2.0,
) -> list[Utterance]:
    """Every paused sentence at every pause length and every sentence complete, per speaker."""
    if codec not in CODECS:
        raise ValueError(f"turn_corpus: codec {codec!r} is not one of {sorted(CODECS)}")
    rate = CODECS[codec]
    lead = np.zeros(int(lead_s * rate), np.int16)
    tail = np.zeros(int(tail_s * rate), np.int16)
    pauses = list(pauses_ms)
    out: list[Utterance] = []
    for s, (pitch, scale) in enumerate(speakers):
        for i, (text, after, category) in enumerate(paused):
            pcm, ends = _speak(text, rate, pitch, scale)
            cut = int(ends[after] * rate / 1000)
            for pause in pauses:
                gap = np.zeros(int(pause * rate / 1000), np.int16)
                audio = np.concatenate((lead, pcm[:cut], gap, pcm[cut:], tail))
                out.append(
                    Utterance(
                        name=f"{codec}-s{s}-p{i}-{pause}ms",
                        text=text,
                        kind="paused",
                        category=category,
                        codec=codec,
                        rate=rate,
                        pcm=_through(codec, audio),
                        speech_end_ms=1000 * lead_s + ends[-1] + pause,
                        pause_ms=pause,
                        pause_at_ms=1000 * lead_s + ends[after],
                        words_before_pause=" ".join(text.split()[: after + 1]),
                    )
                )
        for i, (text, category) in enumerate(complete):
            pcm, ends = _speak(text, rate, pitch, scale)
            out.append(
                Utterance(
                    name=f"{codec}-s{s}-c{i}",
                    text=text,
                    kind="complete",
                    category=category,
                    codec=codec,
                    rate=rate,
                    pcm=_through(codec, np.concatenate((lead, pcm, tail))),
                    speech_end_ms=1000 * lead_s + ends[-1],
                )
            )
    return out


def frames(pcm: PCM, rate: int, frame_ms: int = 20) -> Iterable[PCM]:
    """``pcm`` in 20 ms pieces, as Plivo sends it (the last one padded with silence)."""
    n = rate * frame_ms // 1000
    padded = np.concatenate((pcm, np.zeros(-pcm.size % n, np.int16)))
    for start in itertools.count(0, n):
        if start >= padded.size:
            return
        yield padded[start : start + n]
