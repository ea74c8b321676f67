"""A turn-taking corpus: caller utterances that pause mid-sentence, and ones that are complete.

Each sentence is spoken whole by the offline Piper voice (several pitches and speeds for several
"speakers"), so a pause is cut in exactly between two words (Piper's alignments) and the speech
around it keeps the prosody of a sentence that goes on, as a caller who stops to think does. A
paused utterance is the same audio with ``pause_ms`` of silence inserted after word ``pause_after``:
a person is clearly not done there ("I'd like to book a table for ... four people"). A complete
utterance is a whole sentence. Each is led by ``lead_s`` of silence and followed by ``tail_s``.

Used by ``bench/end_of_turn.py`` (the decision alone) and by the over-the-wire turn benchmark::

    from bench.turn_corpus import make_corpus
    for utt in make_corpus(rate=8000):
        utt.pcm, utt.kind, utt.pause_ms, utt.speech_end_ms
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from voicebridge.frames import PCM

# (sentence, index of the word after which a caller pauses: mid-sentence, clearly not done)
PAUSED: tuple[tuple[str, int], ...] = (
    ("I'd like to book a table for four people tomorrow evening.", 6),
    ("Can I order a birthday cake for my daughter on Saturday?", 6),
    ("My order number is five five one two seven.", 3),
    ("My order number is five five one two seven.", 6),
    ("I want to know if you are open on Sunday morning.", 4),
    ("The delivery should go to forty two Harbor Street.", 4),
    ("Could you tell me what time you close today?", 3),
    ("I placed an order last week and it has not arrived yet.", 5),
    ("Do you have any gluten free bread or cakes?", 3),
    ("I need to change the date of my booking to Friday.", 5),
)
COMPLETE: tuple[str, ...] = (
    "What time do you open tomorrow?",
    "I'd like to book a table for four people.",
    "Where are you located?",
    "My order number is five five one two seven.",
    "Can I speak to a manager please?",
    "Do you deliver on weekends?",
    "I want to order a birthday cake.",
    "Is there parking near the shop?",
    "Thank you, that's all.",
    "Has my order been shipped yet?",
)
# (pitch in semitones, length scale): different-sounding callers, some slower
SPEAKERS: tuple[tuple[float, float], ...] = ((-2.0, 1.0), (2.0, 1.1), (-4.0, 1.25))
PAUSES_MS: tuple[int, ...] = (500, 800, 1200)


@dataclass(frozen=True)
class Utterance:
    """One caller utterance, with where its speech ends and where (if anywhere) it pauses."""

    name: str
    text: str
    kind: str  # "complete" or "paused"
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


def make_corpus(
    rate: int = 8000,
    *,
    speakers: Sequence[tuple[float, float]] = SPEAKERS,
    pauses_ms: Iterable[int] = PAUSES_MS,
    paused: Sequence[tuple[str, int]] = PAUSED,
    complete: Sequence[str] = COMPLETE,
    lead_s: float = 0.4,
    tail_s: float = 2.0,
) -> list[Utterance]:
    """Every paused sentence at every pause length and every sentence complete, per speaker."""
    lead = np.zeros(int(lead_s * rate), np.int16)
    tail = np.zeros(int(tail_s * rate), np.int16)
    pauses = list(pauses_ms)
    out: list[Utterance] = []
    for s, (pitch, scale) in enumerate(speakers):
        for i, (text, after) in enumerate(paused):
            pcm, ends = _speak(text, rate, pitch, scale)
            cut = int(ends[after] * rate / 1000)
            end_ms = ends[-1]
            for pause in pauses:
                gap = np.zeros(int(pause * rate / 1000), np.int16)
                audio = np.concatenate((lead, pcm[:cut], gap, pcm[cut:], tail))
                out.append(
                    Utterance(
                        name=f"s{s}-p{i}-{pause}ms",
                        text=text,
                        kind="paused",
                        rate=rate,
                        pcm=audio,
                        speech_end_ms=1000 * lead_s + end_ms + pause,
                        pause_ms=pause,
                        pause_at_ms=1000 * lead_s + ends[after],
                        words_before_pause=" ".join(text.split()[: after + 1]),
                    )
                )
        for i, text in enumerate(complete):
            pcm, ends = _speak(text, rate, pitch, scale)
            out.append(
                Utterance(
                    name=f"s{s}-c{i}",
                    text=text,
                    kind="complete",
                    rate=rate,
                    pcm=np.concatenate((lead, pcm, tail)),
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
