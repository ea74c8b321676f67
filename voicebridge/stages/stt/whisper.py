"""The ``whisper`` stage: offline transcription of each caller utterance with faster-whisper.

Whisper is not a streaming recogniser: it reads a whole utterance, so the stage waits for the
VAD's ``SpeechEnded`` (which carries the utterance, pre-roll included) and transcribes that. The
model is loaded once per process and shared by every call; inference runs in the process-wide
``whisper`` worker pool so a transcription never stalls any call's audio on the event loop, and
``process`` never waits for it either: frames keep flowing while transcriptions run in the
background, and their transcripts are emitted in utterance order.

At the VAD's pause (``SpeechPaused``) the utterance so far is transcribed speculatively: if the
pause was the end, the final transcript is ready sooner, and its words are passed back to the
VAD's end-of-turn decision (its ``text_cues``).

With ``interim_interval_ms`` set, the utterance so far is also transcribed every that many ms of
speech and emitted as a non-final ``Transcript`` (an early hint for dialogues that want one).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from pydantic import Field

from voicebridge.audio.resample import resample
from voicebridge.frames import (
    PCM,
    AudioIn,
    CallEnded,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
)
from voicebridge.runtime.stage import Stage, StageError, StageParams
from voicebridge.runtime.workers import WorkerPoolFull, run_blocking
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.offline_models import whisper_model_dir

WHISPER_RATE = 16000
POOL_NAME = "whisper"
_POOL_QUEUE = 64

# Non-speech annotations Whisper writes instead of words: [BLANK_AUDIO], (music), *coughs*, ♪.
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫]+")
# What Whisper says about silence and noise it was trained on (subtitles). A caller may say them
# too, so they are dropped only when the model itself doubts there was speech.
_SILENCE_PHRASES = frozenset(
    {"you", "thank you", "thanks for watching", "thank you for watching", "bye", "so"}
)
_DOUBTFUL_NO_SPEECH = 0.3
_QUIET_RMS = 1e-3  # about -60 dBFS: no speech at all


class WhisperParams(StageParams):
    model_path: Path | None = Field(
        None, description="a CTranslate2 Whisper model folder (default: the bundled tiny.en)"
    )
    beam_size: int = Field(1, ge=1, le=10, description="1 = greedy (fastest)")
    language: str | None = Field("en", description="None = detect (multilingual models only)")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, float32, ...")
    threads: int = Field(2, ge=0, le=64, description="CPU threads per transcription (0 = auto)")
    workers: int = Field(1, ge=1, le=32, description="transcriptions run in parallel, per process")
    interim_interval_ms: int = Field(
        0, ge=0, description="emit interim transcripts every N ms of speech (0 = off)"
    )
    vad_filter: bool = Field(False, description="run Silero VAD inside Whisper as well")
    speculative: bool = Field(
        True, description="start transcribing at the VAD's pause signal (vad pause_ms)"
    )
    initial_prompt: str | None = Field(None, description="domain words to bias recognition")
    hotwords: str | None = Field(None, description="words to favour (faster-whisper hotwords)")
    split_digits: bool = Field(
        True,
        description="one digit per token: stops 'five five' becoming '555' (42 comes out as words)",
    )
    min_utterance_ms: int = Field(200, ge=0, description="shorter utterances are not transcribed")
    call_end_wait_s: float = Field(
        10.0, gt=0, le=600, description="at call end, how long pending transcripts may still take"
    )


# --- the process-wide model ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ModelKey:
    path: str
    compute_type: str
    threads: int
    workers: int


_models: dict[_ModelKey, WhisperModel] = {}
_models_lock = threading.Lock()


def _model_key(params: WhisperParams) -> _ModelKey:
    path = params.model_path if params.model_path is not None else whisper_model_dir()
    if not path.is_dir():
        # faster-whisper would treat an unknown string as a hub id and try to download it.
        raise StageError(f"whisper: model_path {str(path)!r} is not a CTranslate2 model folder")
    return _ModelKey(str(path.resolve()), params.compute_type, params.threads, params.workers)


def _get_model(key: _ModelKey) -> WhisperModel:
    """The loaded model for ``key``; loads it (blocking, once per process) on first use."""
    model = _models.get(key)
    if model is not None:
        return model
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = WhisperModel(
                key.path,
                device="cpu",
                compute_type=key.compute_type,
                cpu_threads=key.threads,
                num_workers=key.workers,
                local_files_only=True,
            )
            _models[key] = model
        return model


# --- one transcription (runs in a worker thread) --------------------------------------------


@dataclass(frozen=True, slots=True)
class _Result:
    text: str
    confidence: float | None
    seconds: float


def _clean(text: str) -> str:
    return " ".join(_ANNOTATION.sub(" ", text).split())


def _words_only(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


# Whisper's vocabulary has tokens for many digit groups ("55", "555", "12"). Reading "five
# five one two", tiny.en picks "555" (a phone-number prefix it saw often) for the two fives and
# writes "55512". With those tokens suppressed each digit is its own token and is written as
# heard; numbers such as 42 then come out as words ("forty-two"). bench/digits.py measures it.
_SPLIT_DIGITS = "split_digits"
_multi_digit: dict[str, list[int]] = {}


def _multi_digit_tokens(key: _ModelKey, model: WhisperModel) -> list[int]:
    """Ids of the text tokens that hold two or more digits (computed once per model)."""
    ids = _multi_digit.get(key.path)
    if ids is None:
        tokenizer = model.hf_tokenizer
        eot = tokenizer.token_to_id("<|endoftext|>")
        ids = [
            i
            for i in range(eot if eot is not None else tokenizer.get_vocab_size())
            if sum(c.isdigit() for c in tokenizer.decode([i])) >= 2
        ]
        _multi_digit[key.path] = ids
    return ids


def _transcribe(key: _ModelKey, pcm: PCM, rate: int, options: dict[str, Any]) -> _Result | None:
    """Resample, transcribe, and drop what is not speech. Blocking: runs in the worker pool."""
    started = time.perf_counter()
    model = _get_model(key)
    split = options.get(_SPLIT_DIGITS, False)
    options = {k: v for k, v in options.items() if k != _SPLIT_DIGITS}
    if split:  # -1: Whisper's own suppressed set (non-speech symbols) stays suppressed
        options["suppress_tokens"] = [-1, *_multi_digit_tokens(key, model)]
    audio16 = resample(pcm, rate, WHISPER_RATE) if rate != WHISPER_RATE else pcm
    audio = audio16.astype(np.float32) * np.float32(1.0 / 32768.0)
    segments, _info = model.transcribe(audio, **options)
    texts: list[str] = []
    logprob_sum = 0.0
    tokens = 0
    doubt = 0.0
    for segment in segments:  # a generator: decoding happens while iterating
        text = _clean(segment.text)
        if not _words_only(text):
            continue
        texts.append(text)
        weight = max(len(segment.tokens), 1)
        logprob_sum += segment.avg_logprob * weight
        tokens += weight
        doubt = max(doubt, segment.no_speech_prob)
    text = " ".join(texts).strip()
    words = _words_only(text)
    if not words:
        return None
    if words in _SILENCE_PHRASES:
        rms = float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
        if doubt >= _DOUBTFUL_NO_SPEECH or rms < _QUIET_RMS:
            return None
    confidence = math.exp(logprob_sum / tokens) if tokens else None
    if confidence is not None:
        confidence = min(1.0, max(0.0, confidence))
    return _Result(text, confidence, time.perf_counter() - started)


def _options(p: WhisperParams) -> dict[str, Any]:
    """faster-whisper arguments: one pass per utterance, no timestamps, no cross-utterance text."""
    return {
        "language": p.language,
        "beam_size": p.beam_size,
        "best_of": 1,
        "temperature": 0.0,  # no temperature fallback: a retry would double the latency
        "without_timestamps": True,
        "condition_on_previous_text": False,
        "vad_filter": p.vad_filter,
        "initial_prompt": p.initial_prompt,
        "hotwords": p.hotwords,
        _SPLIT_DIGITS: p.split_digits,  # becomes suppress_tokens once the model is loaded
    }


def transcribe(pcm: PCM, rate: int, params: WhisperParams | None = None) -> str:
    """One utterance, blocking, as the stage transcribes it ("" for no speech): for tools and
    benchmarks that need whisper's words without a pipeline."""
    p = params if params is not None else WhisperParams()
    result = _transcribe(_model_key(p), pcm, rate, _options(p))
    return result.text if result is not None else ""


# --- the stage --------------------------------------------------------------------------------


class Whisper(Stage):
    type_name = "whisper"
    role = "stt"
    inline = (AudioIn,)  # caller audio is only buffered: taken directly while idle
    description = "Transcribes each caller utterance offline with Whisper (faster-whisper, CPU)."
    Params = WhisperParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: WhisperParams = self.params
        self._key: _ModelKey | None = None
        self._options = _options(p)
        self._last_final: asyncio.Task[None] | None = None  # transcripts leave in this order
        # Interim state: the utterance being spoken, as the AudioIn frames that carried it.
        self._utterance = 0
        self._speaking = False
        self._chunks: list[PCM] = []
        self._samples = 0
        self._samples_at_interim = 0
        self._audio_end_ms = 0.0
        self._interim_task: asyncio.Task[None] | None = None
        # Speculation: a transcription started at a pause, reused if that pause was the end.
        self._guess: tuple[float, asyncio.Task[_Result | None]] | None = None

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Load the model at service start so the first caller does not wait ~1-2 s for it."""
        assert isinstance(params, WhisperParams)
        key = _model_key(params)
        await asyncio.to_thread(_get_model, key)
        # One throw-away run: CTranslate2's first pass allocates and is slower than the rest.
        silence = np.zeros(WHISPER_RATE // 2, np.int16)
        await asyncio.to_thread(_transcribe, key, silence, WHISPER_RATE, _options(params))

    async def start(self) -> None:
        self._key = _model_key(self.params)
        if self.params.speculative:
            EarlyWords.of(self.ctx).announce()

    # --- frames -------------------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            if self._speaking:
                self._buffer(frame)
        elif isinstance(frame, SpeechStarted):
            self._begin_utterance()
        elif isinstance(frame, SpeechPaused):
            self._speculate(frame)
        elif isinstance(frame, SpeechEnded):
            self._end_utterance(frame)
        elif isinstance(frame, CallEnded):
            await self._finish_pending()
        await self.emit(frame)

    def _begin_utterance(self) -> None:
        self._utterance += 1
        self._speaking = self.params.interim_interval_ms > 0
        self._chunks = []
        self._samples = 0
        self._samples_at_interim = 0

    def _buffer(self, frame: AudioIn) -> None:
        self._chunks.append(frame.pcm)
        self._samples += len(frame.pcm)
        rate = self.ctx.info.sample_rate
        self._audio_end_ms = frame.timestamp_ms + 1000.0 * len(frame.pcm) / rate
        due = (
            self._samples - self._samples_at_interim
            >= self.params.interim_interval_ms * rate / 1000
        )
        busy = self._interim_task is not None and not self._interim_task.done()
        if due and not busy:
            self._samples_at_interim = self._samples
            audio = np.concatenate(self._chunks)
            self._interim_task = self.spawn(
                self._interim(self._utterance, audio, self._audio_end_ms), name="whisper-interim"
            )

    def _speculate(self, frame: SpeechPaused) -> None:
        """Start transcribing at a pause: if the pause turns out to be the end of the
        utterance, the transcript is ready (or nearly) when the VAD confirms it."""
        if not self.params.speculative:
            return
        self._drop_guess()
        rate = self.ctx.info.sample_rate
        if frame.audio.size * 1000 < self.params.min_utterance_ms * rate:
            self._publish(frame.at_ms, "")  # too short to transcribe: no words to wait for
            return
        guess = self.spawn(self._guess_words(frame.at_ms, frame.audio), name="whisper-guess")
        self._guess = (frame.at_ms, guess)

    def _drop_guess(self) -> None:
        if self._guess is not None:
            self._guess[1].cancel()
            self._guess = None

    def _end_utterance(self, frame: SpeechEnded) -> None:
        guess: asyncio.Task[_Result | None] | None = None
        if self._guess is not None and self._guess[0] == frame.at_ms:
            guess = self._guess[1]  # the pause was the end: same silence, same speech
            self._guess = None
        else:
            self._drop_guess()
        audio = frame.audio
        if not audio.size and self._chunks:  # a VAD that sends edges only: use what we heard
            audio = np.concatenate(self._chunks)
        self._speaking = False
        self._chunks = []
        if self._interim_task is not None:
            # A late interim is useless now; withdrawn before it starts, it frees the worker.
            self._interim_task.cancel()
            self._interim_task = None
        rate = self.ctx.info.sample_rate
        if audio.size * 1000 < self.params.min_utterance_ms * rate:
            self.log.debug("stt_skipped_short", ms=round(1000 * audio.size / rate))
            return
        self._last_final = self.spawn(
            self._final(audio, frame.at_ms, self._last_final, guess), name="whisper-final"
        )

    # --- background work ----------------------------------------------------------------------
    async def _run(self, audio: PCM) -> _Result | None:
        key = self._key or _model_key(self.params)
        return await run_blocking(
            POOL_NAME,
            _transcribe,
            key,
            audio,
            self.ctx.info.sample_rate,
            self._options,
            max_workers=self.params.workers,
            max_queue=_POOL_QUEUE,
        )

    async def _guess_words(self, at_ms: float, audio: PCM) -> _Result | None:
        """The speculative transcription; its words also go to the end-of-turn decision, which
        may be waiting for them to tell a finished sentence from one that goes on."""
        result: _Result | None = None
        try:
            result = await self._run(audio)
        finally:  # failed or dropped: "" tells the decision not to wait for these words
            self._publish(at_ms, result.text if result is not None else "")
        return result

    def _publish(self, at_ms: float, text: str) -> None:
        words = EarlyWords.of(self.ctx)
        if words.wanted:
            words.publish(at_ms, text)

    async def _final(
        self,
        audio: PCM,
        at_ms: float,
        previous: asyncio.Task[None] | None,
        guess: asyncio.Task[_Result | None] | None = None,
    ) -> None:
        result: _Result | None = None
        try:
            result = await guess if guess is not None else await self._run(audio)
        except WorkerPoolFull as exc:
            self.log.warning("stt_overloaded", error=str(exc))
        if previous is not None:  # keep utterance order; its failure is reported by spawn
            await asyncio.wait([previous])
        if result is None:
            self.log.debug("stt_empty", at_ms=at_ms)
            return
        self.log.debug(
            "stt_final",
            ms=round(1000 * result.seconds),
            audio_ms=round(1000 * audio.size / self.ctx.info.sample_rate),
            chars=len(result.text),
        )
        await self.emit(Transcript(result.text, True, result.confidence, at_ms))

    async def _interim(self, utterance: int, audio: PCM, at_ms: float) -> None:
        try:
            result = await self._run(audio)
        except WorkerPoolFull:
            return  # interim results are optional; never add load to an overloaded server
        previous = self._last_final
        if previous is not None and not previous.done():  # never before an earlier final
            await asyncio.wait([previous])
        if result is None or utterance != self._utterance or not self._speaking:
            return
        await self.emit(Transcript(result.text, False, result.confidence, at_ms))

    async def _finish_pending(self) -> None:
        """At call end, let transcripts still being computed out (bounded), before CallEnded."""
        if self._interim_task is not None:
            self._interim_task.cancel()
        last = self._last_final
        if last is not None and not last.done():
            await asyncio.wait([last], timeout=self.params.call_end_wait_s)

    async def stop(self) -> None:
        await self.cancel_tasks()
        self._last_final = None
        self._interim_task = None
