from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicebridge.audio.fir import kaiser_lowpass
from voicebridge.audio.resample import _design

# scipy.signal.firwin's taps for the resampler's designs, made by data/make_firwin_reference.py.
REFERENCE = np.load(Path(__file__).with_name("data") / "firwin_reference.npz")
DESIGNS = sorted(key.removesuffix("_taps") for key in REFERENCE.files if key.endswith("_taps"))


@pytest.mark.parametrize("design", DESIGNS)
def test_taps_equal_scipy_firwin(design: str) -> None:
    numtaps, cutoff, beta = REFERENCE[f"{design}_params"]
    expected = REFERENCE[f"{design}_taps"]
    taps = kaiser_lowpass(int(numtaps), float(cutoff), float(beta))
    assert taps.shape == expected.shape
    np.testing.assert_allclose(taps, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("design", DESIGNS)
def test_resampler_prototype_is_the_reference_design(design: str) -> None:
    """The resampler still asks for the same filters it asked scipy for."""
    up, down, quality = design.split("_")
    prototype = _design(int(up), int(down), quality).prototype
    expected = REFERENCE[f"{design}_taps"] * int(up)
    np.testing.assert_allclose(prototype, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("numtaps", "cutoff", "beta"), [(1, 0.5, 7.0), (49, 0.46, 7.0), (48, 0.3, 5.0)]
)
def test_linear_phase_unit_dc_gain(numtaps: int, cutoff: float, beta: float) -> None:
    taps = kaiser_lowpass(numtaps, cutoff, beta)
    assert taps.shape == (numtaps,)
    np.testing.assert_allclose(taps, taps[::-1], rtol=0, atol=1e-17)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)


def test_cutoff_is_the_half_amplitude_point() -> None:
    taps = kaiser_lowpass(401, 0.25, 8.0)
    # Frequency response at w (fraction of Nyquist): the taps' DTFT, linear phase removed.
    m = np.arange(taps.size) - (taps.size - 1) / 2

    def gain(w: float) -> float:
        return float(np.abs(np.sum(taps * np.cos(np.pi * w * m))))

    assert gain(0.0) == pytest.approx(1.0)
    assert gain(0.25) == pytest.approx(0.5, abs=1e-3)
    assert gain(0.2) == pytest.approx(1.0, abs=1e-3)
    assert gain(0.3) < 1e-3


@pytest.mark.parametrize(("numtaps", "cutoff"), [(0, 0.5), (49, 0.0), (49, 1.0), (49, -0.1)])
def test_rejects_bad_arguments(numtaps: int, cutoff: float) -> None:
    with pytest.raises(ValueError, match="numtaps" if numtaps < 1 else "cutoff"):
        kaiser_lowpass(numtaps, cutoff, 7.0)
