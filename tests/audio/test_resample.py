from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from voicebridge.audio import StreamResampler, resample
from voicebridge.audio.resample import _design

RATES = (8000, 16000, 22050, 24000)
PAIRS = [(a, b) for a in RATES for b in RATES if a != b]
WIDE_PAIRS = [(44100, 8000), (48000, 16000), (8000, 48000), (44100, 48000), (48000, 44100)]

F64 = npt.NDArray[np.float64]
I16 = npt.NDArray[np.int16]


def expected_length(n_in: int, in_rate: int, out_rate: int) -> int:
    """round(n_in * out / in), halves rounded up."""
    return (2 * n_in * out_rate + in_rate) // (2 * in_rate)


def tone(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> I16:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def mixed_signal(rate: int, seconds: float, seed: int = 0) -> I16:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 8000 * np.sin(2 * np.pi * 440 * t) + 5000 * np.sin(2 * np.pi * 3100 * t)
    x += rng.normal(0, 3000, t.size)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def stream(rs: StreamResampler, x: I16, sizes: list[int]) -> I16:
    """Feed ``x`` in pieces of the given sizes (cycled), then flush."""
    out = []
    i = k = 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(rs.process(x[i : i + n]))
        i += n
        k += 1
    out.append(rs.flush())
    return np.concatenate(out)


def odd_sizes(seed: int) -> list[int]:
    return [int(n) | 1 for n in np.random.default_rng(seed).integers(0, 700, 64)]


def upfirdn(h: F64, x: F64, up: int, down: int) -> F64:
    """Zero-stuff ``x`` by ``up``, filter by ``h``, keep every ``down``-th sample: float64, whole
    signal, no state; one ``np.convolve`` per sub-filter instead of one on the stuffed signal."""
    n = np.arange(-(-((x.size - 1) * up + h.size) // down)) * down  # full-convolution indices
    q, phase = np.divmod(n, up)
    y = np.zeros(n.size)
    for p in np.unique(phase[phase < h.size]):  # a phase past the filter's end sums nothing
        conv = np.convolve(x, h[p::up])  # conv[q] is the full output at q*up + p
        at = np.flatnonzero((phase == p) & (q < conv.size))
        y[at] = conv[q[at]]
    return y


def float_reference(x: I16, in_rate: int, out_rate: int) -> F64:
    """The ideal (unrounded) output: same prototype filter, applied directly in float64."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    d = _design(up, down, "telephony")
    y = upfirdn(d.prototype, x.astype(np.float64), up, down)
    n = expected_length(x.size, in_rate, out_rate)
    y = np.concatenate((y, np.zeros(max(0, d.delay + n - y.size))))
    return np.asarray(y[d.delay : d.delay + n])


def amplitude_db(y: I16, freq: float, rate: int, amplitude: float) -> float:
    """Least-squares amplitude of a ``freq`` sinusoid in y (edges skipped), relative, in dB."""
    mid = y[rate // 10 : -rate // 10].astype(np.float64)
    t = (np.arange(mid.size) + rate // 10) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, mid, rcond=None)
    return float(20 * np.log10(np.hypot(*coef) / amplitude))


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS + WIDE_PAIRS)
def test_chunked_equals_whole_and_matches_ideal_filter(in_rate: int, out_rate: int) -> None:
    x = mixed_signal(in_rate, 0.5)  # > one internal block and piece, so those paths run too
    whole = resample(x, in_rate, out_rate)
    assert whole.dtype == np.int16
    assert whole.size == expected_length(x.size, in_rate, out_rate)
    frame = in_rate // 50
    for sizes in ([frame], odd_sizes(in_rate + out_rate), [1, 0, 2, frame - 1, 3 * frame + 1]):
        chunked = stream(StreamResampler(in_rate, out_rate), x, sizes)
        assert chunked.size == whole.size
        assert np.abs(chunked.astype(np.int32) - whole).max() <= 1
    ideal = float_reference(x, in_rate, out_rate)
    assert np.abs(whole - ideal).max() <= 1.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS + WIDE_PAIRS)
def test_passband_tone_keeps_amplitude_and_frequency(in_rate: int, out_rate: int) -> None:
    y = resample(tone(1000, in_rate, 0.5), in_rate, out_rate)
    assert abs(amplitude_db(y, 1000, out_rate, 10000)) < 0.5
    mid = y[out_rate // 10 : -out_rate // 10].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    peak_hz = np.argmax(spectrum) * out_rate / mid.size
    assert abs(peak_hz - 1000) <= out_rate / mid.size


def test_upsampling_1khz_8k_to_16k() -> None:
    y = resample(tone(1000, 8000, 1.0), 8000, 16000)
    assert y.size == 16000
    assert abs(amplitude_db(y, 1000, 16000, 10000)) < 0.5
    # Residual after removing the fitted 1 kHz sinusoid is tiny: no other frequency present.
    mid = y[1600:-1600].astype(np.float64)
    t = np.arange(1600, 1600 + mid.size) / 16000
    basis = np.stack([np.sin(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 1000 * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, mid, rcond=None)
    assert np.sqrt(np.mean((mid - basis @ coef) ** 2)) < 2.0


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "freq"),
    [(16000, 8000, 5000), (22050, 8000, 5000), (24000, 8000, 6000), (24000, 16000, 9000)],
)
def test_downsampling_rejects_content_above_new_nyquist(
    in_rate: int, out_rate: int, freq: float
) -> None:
    x = tone(freq, in_rate, 0.5, amplitude=20000)
    y = resample(x, in_rate, out_rate)
    mid = y[out_rate // 10 : -out_rate // 10].astype(np.float64)
    rms_in = 20000 / np.sqrt(2)
    attenuation_db = 20 * np.log10(max(np.sqrt(np.mean(mid**2)), 1e-3) / rms_in)
    assert attenuation_db <= -40


def test_upsampling_suppresses_images() -> None:
    y = resample(tone(2000, 8000, 0.5), 8000, 16000)
    mid = y[1600:-1600].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    freqs = np.fft.rfftfreq(mid.size, 1 / 16000)
    image = spectrum[freqs >= 4600].max()  # the 2 kHz image would sit at 6 kHz
    assert 20 * np.log10(image / spectrum.max()) <= -40


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_no_clicks_at_chunk_joins(in_rate: int, out_rate: int) -> None:
    x = tone(440, in_rate, 0.4, amplitude=20000)
    edge = out_rate // 50  # skip the signal's own abrupt start and end

    def max_step(y: I16) -> int:
        return int(np.abs(np.diff(y[edge:-edge].astype(np.int32))).max())

    whole = resample(x, in_rate, out_rate)
    smooth = max_step(whole)
    assert smooth <= 2 * 20000 * np.sin(np.pi * 440 / out_rate) * 1.01 + 2  # a clean sine
    frame = in_rate // 50
    for sizes in ([frame], odd_sizes(7)):
        assert max_step(stream(StreamResampler(in_rate, out_rate), x, sizes)) <= smooth + 1
    # The check has teeth: restarting the filter every frame (stateless) breaks the joins.
    naive = np.concatenate(
        [resample(x[i : i + frame], in_rate, out_rate) for i in range(0, x.size, frame)]
    )
    assert max_step(naive) > smooth + 500


@pytest.mark.parametrize(("in_rate", "out_rate"), [*PAIRS, (44100, 48000), (48000, 8000)])
def test_output_length_accounting(in_rate: int, out_rate: int) -> None:
    rs = StreamResampler(in_rate, out_rate)
    delay = rs.delay_samples
    assert isinstance(delay, int) and delay > 0
    assert delay < out_rate * 0.003  # group delay stays under 3 ms
    pattern = [0, 1, 0, 7, 160, 1, 331, 441, 2000, 2]
    for n_in in (0, 1, 2, 3, 159, 160, 161, 441, 999, 4801):
        total_in = emitted = 0
        for size in pattern * (1 + n_in // sum(pattern)):
            size = min(size, n_in - total_in)
            emitted += rs.process(np.zeros(size, dtype=np.int16)).size
            total_in += size
            # The stream lags the ideal count by exactly the filter delay, never more.
            assert emitted == max(0, -(-total_in * out_rate // in_rate) - delay)
        assert total_in == n_in
        emitted += rs.flush().size  # flush also resets, so the next round starts fresh
        assert emitted == expected_length(n_in, in_rate, out_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_is_time_aligned(in_rate: int, out_rate: int) -> None:
    x = np.zeros(in_rate // 5, dtype=np.int16)
    x[in_rate // 10] = 30000  # impulse at 100 ms, a whole number of samples at every rate
    y = resample(x, in_rate, out_rate)
    assert int(np.argmax(np.abs(y))) == out_rate // 10


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_silence_in_silence_out(in_rate: int, out_rate: int) -> None:
    rs = StreamResampler(in_rate, out_rate)
    out = stream(rs, np.zeros(in_rate // 5, dtype=np.int16), [in_rate // 50, 1, 37])
    assert out.size == out_rate // 5
    assert not out.any()


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (16000, 8000), (22050, 8000)])
def test_full_scale_input_is_clipped_not_wrapped(in_rate: int, out_rate: int) -> None:
    t = np.arange(in_rate // 5)
    square = np.where((t // (in_rate // 200)) % 2 == 0, 32767, -32768).astype(np.int16)
    y = resample(square, in_rate, out_rate)
    ideal = float_reference(square, in_rate, out_rate)
    assert ideal.max() > 32767.5 and ideal.min() < -32768.5  # the filter really overshoots
    np.testing.assert_array_equal(y[ideal > 32767.5], 32767)
    np.testing.assert_array_equal(y[ideal < -32768.5], -32768)
    assert np.abs(y - np.clip(ideal, -32768, 32767)).max() <= 1.0


def test_pass_through_same_rate() -> None:
    rs = StreamResampler(16000, 16000)
    x = mixed_signal(16000, 0.02)
    assert rs.process(x) is x
    assert rs.delay_samples == 0
    assert rs.flush().size == 0
    assert resample(x, 8000, 8000) is x


def test_reset_and_reuse_after_flush() -> None:
    x = mixed_signal(16000, 0.1)
    fresh = stream(StreamResampler(16000, 8000), x, [320])
    rs = StreamResampler(16000, 8000)
    rs.process(mixed_signal(16000, 0.05, seed=3))
    rs.reset()
    np.testing.assert_array_equal(stream(rs, x, [320]), fresh)
    np.testing.assert_array_equal(stream(rs, x, [320]), fresh)  # flush left it fresh too


def test_high_quality_preset() -> None:
    y = resample(tone(5000, 16000, 0.5, amplitude=20000), 16000, 8000, quality="high")
    mid = y[800:-800].astype(np.float64)
    assert np.sqrt(np.mean(mid**2)) < 20000 / np.sqrt(2) * 10 ** (-70 / 20)
    passband = resample(tone(3000, 8000, 0.5), 8000, 16000, quality="high")
    assert abs(amplitude_db(passband, 3000, 16000, 10000)) < 0.1


def test_invalid_arguments() -> None:
    assert StreamResampler(np.int64(8000), 16000).in_rate == 8000  # type: ignore[arg-type]
    bad_rates: tuple[Any, ...] = (0, -8000, 8000.0, True)
    for bad in bad_rates:
        with pytest.raises(ValueError, match="in_rate"):
            StreamResampler(bad, 8000)
        with pytest.raises(ValueError, match="out_rate"):
            StreamResampler(8000, bad)
    with pytest.raises(ValueError, match="telephony"):
        StreamResampler(8000, 16000, quality="bogus")
    rs = StreamResampler(8000, 16000)
    with pytest.raises(TypeError, match="int16"):
        rs.process(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        rs.process(np.zeros((2, 160), dtype=np.int16))
