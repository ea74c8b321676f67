"""The smart-turn v3.2 end-of-turn model: how likely is it that the caller has finished?

The model (Pipecat's, BSD-2-Clause; a Whisper-tiny encoder with a classifier head, int8, 8.7 MB)
hears the last 8 s of the utterance, trailing pause included, as Whisper log-mel features, and
answers one probability that the turn is complete. It reads intonation and rhythm, not words, so
it works the same behind every transcriber. The ONNX file is read from the installed
``pipecat-ai`` wheel as data (:func:`~voicebridge.stages.offline_models.smart_turn_model_path`)
or from ``model_path``; nothing is downloaded.

One check is a blocking call of a few milliseconds into onnxruntime (which releases the GIL), run
in the process-wide ``end-of-turn`` worker pool, so no call's audio waits for another's check
and checks never queue behind a transcription. The session is single-threaded per check: many
short checks from many calls spread over the cores better than one check on all of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from voicebridge.audio.logmel import RATE, log_mel
from voicebridge.audio.resample import resample
from voicebridge.frames import PCM
from voicebridge.stages.offline_models import smart_turn_model_path

__all__ = ["POOL_NAME", "WINDOW_S", "SmartTurnModel", "load_model"]

POOL_NAME = "end-of-turn"
WINDOW_S = 8  # the model's input: the last 8 s, zero-padded at the start when shorter
_WINDOW = WINDOW_S * RATE
_INPUT = "input_features"


class SmartTurnModel:
    """One loaded model; :meth:`probability` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        names = [node.name for node in self._session.get_inputs()]
        if names != [_INPUT]:
            raise ValueError(
                f"end_of_turn: {path} is not a smart-turn v3 model (inputs {names}, "
                f"expected [{_INPUT!r}])"
            )

    def window(self, pcm: PCM, rate: int) -> np.ndarray:
        """The model's input audio: the last 8 s at 16 kHz as float32, zero-padded in front."""
        tail = pcm[-(WINDOW_S * rate + rate // 10) :]  # resample only what is kept (+ margin)
        audio16 = resample(tail, rate, RATE) if rate != RATE else tail
        audio = audio16[-_WINDOW:].astype(np.float32) * np.float32(1.0 / 32768.0)
        if audio.size < _WINDOW:
            audio = np.concatenate((np.zeros(_WINDOW - audio.size, np.float32), audio))
        return audio

    def probability(self, pcm: PCM, rate: int) -> float:
        """How likely the utterance ``pcm`` (int16 at ``rate``) is a finished turn (blocking)."""
        features = log_mel(self.window(pcm, rate))[None, :, :]
        (out,) = self._session.run(None, {_INPUT: features})
        return float(np.asarray(out).reshape(-1)[0])  # the graph ends in a sigmoid


@dataclass(frozen=True, slots=True)
class _Key:
    path: str
    threads: int


_models: dict[_Key, SmartTurnModel] = {}
_lock = threading.Lock()


def load_model(model_path: Path | None = None, *, threads: int = 1) -> SmartTurnModel:
    """The process-wide model for ``model_path`` (default: the one in the ``pipecat-ai`` wheel),
    loaded on first use (blocking, about 0.1 s)."""
    path = model_path if model_path is not None else smart_turn_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"end_of_turn: model_path {str(path)!r} is not a file")
    key = _Key(str(path.resolve()), threads)
    model = _models.get(key)
    if model is not None:
        return model
    with _lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = SmartTurnModel(Path(key.path), threads=threads)
        return model
