from __future__ import annotations

import numpy as np
import pytest

from voicebridge.audio import FrameSplitter, duration_ms, samples_for_ms


def test_samples_and_duration() -> None:
    assert samples_for_ms(8000, 20) == 160
    assert samples_for_ms(16000, 20) == 320
    assert samples_for_ms(22050, 20) == 441
    assert samples_for_ms(24000, 10) == 240
    assert samples_for_ms(8000, 0.5) == 4
    assert samples_for_ms(11025, 10) == 110  # 110.25 rounds to nearest
    assert duration_ms(160, 8000) == 20.0
    assert duration_ms(441, 22050) == 20.0
    assert duration_ms(0, 16000) == 0.0
    with pytest.raises(ValueError):
        samples_for_ms(0, 20)
    with pytest.raises(ValueError):
        samples_for_ms(8000, -1)
    with pytest.raises(ValueError):
        duration_ms(10, 0)


@pytest.mark.parametrize("sizes", [[160], [1], [0, 7, 333, 1, 159, 161, 1000], [480, 20]])
def test_frames_reassemble_the_stream(sizes: list[int]) -> None:
    x = np.arange(3000, dtype=np.int16)
    fs = FrameSplitter(160)
    frames: list[np.ndarray] = []
    i = k = 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        frames += fs.push(x[i : i + n])
        i += n
        k += 1
        assert fs.pending == min(i, x.size) % 160
    assert all(f.shape == (160,) and f.dtype == np.int16 for f in frames)
    assert len(frames) == 3000 // 160
    tail = fs.flush(pad=False)
    np.testing.assert_array_equal(np.concatenate([*frames, *tail]), x)
    assert fs.pending == 0
    assert fs.flush() == []


def test_flush_pads_with_zeros() -> None:
    fs = FrameSplitter(4)
    assert fs.push(np.array([1, 2, 3, 4, 5, 6], dtype=np.int16))[0].tolist() == [1, 2, 3, 4]
    (last,) = fs.flush()
    assert last.tolist() == [5, 6, 0, 0]
    assert fs.flush() == []


def test_frames_do_not_alias_input_or_state() -> None:
    fs = FrameSplitter(4)
    a = np.array([1, 2, 3], dtype=np.int16)
    assert fs.push(a) == []
    a[:] = 9  # the caller reuses its buffer
    b = np.array([4, 5, 6, 7, 8, 10], dtype=np.int16)
    first, second = fs.push(b)
    b[:] = 0
    assert first.tolist() == [1, 2, 3, 4]
    assert second.tolist() == [5, 6, 7, 8]
    fs.push(np.array([11, 12], dtype=np.int16))  # overwrites the carry buffer
    assert second.tolist() == [5, 6, 7, 8]
    assert fs.flush(pad=False)[0].tolist() == [10, 11, 12]


def test_reset_and_validation() -> None:
    fs = FrameSplitter(320)
    assert fs.frame_samples == 320
    fs.push(np.zeros(100, dtype=np.int16))
    fs.reset()
    assert fs.pending == 0
    assert fs.flush() == []
    with pytest.raises(ValueError):
        FrameSplitter(0)
    with pytest.raises(TypeError):
        fs.push(np.zeros(10, dtype=np.float64))
    with pytest.raises(ValueError):
        fs.push(np.zeros((2, 10), dtype=np.int16))
