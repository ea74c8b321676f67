import pytest

from voicebridge.plivo import SUPPORTED_FORMATS, StreamFormat, UnsupportedFormat
from voicebridge.plivo.errors import ProtocolError


@pytest.mark.parametrize(
    ("encoding", "rate", "ctype", "codec", "bps", "bpms", "twenty_ms"),
    [
        ("audio/x-mulaw", 8000, "audio/x-mulaw;rate=8000", "mulaw", 1, 8, 160),
        ("audio/x-l16", 8000, "audio/x-l16;rate=8000", "l16", 2, 16, 320),
        ("audio/x-l16", 16000, "audio/x-l16;rate=16000", "l16", 2, 32, 640),
    ],
)
def test_supported_formats_properties(encoding, rate, ctype, codec, bps, bpms, twenty_ms):
    fmt = StreamFormat(encoding, rate)
    assert fmt.content_type == ctype
    assert fmt.codec == codec
    assert fmt.bytes_per_sample == bps
    assert fmt.bytes_per_ms == bpms
    assert fmt.bytes_for_ms(20) == twenty_ms
    assert StreamFormat.from_content_type(ctype) == fmt
    assert fmt in SUPPORTED_FORMATS


def test_supported_formats_constant_is_exactly_three():
    assert {f.content_type for f in SUPPORTED_FORMATS} == {
        "audio/x-mulaw;rate=8000",
        "audio/x-l16;rate=8000",
        "audio/x-l16;rate=16000",
    }


def test_is_frozen_hashable_and_slotted():
    fmt = StreamFormat("audio/x-l16", 16000)
    with pytest.raises(AttributeError):
        fmt.sample_rate = 8000  # type: ignore[misc]
    assert not hasattr(fmt, "__dict__")
    assert {fmt, StreamFormat("audio/x-l16", 16000)} == {fmt}


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [
        ("audio/x-mulaw", 16000),
        ("audio/x-l16", 44100),
        ("audio/x-l16", 24000),
        ("audio/x-alaw", 8000),
        ("audio/X-L16", 8000),  # the constructor is canonical; parsing is lenient
        ("audio/x-l16", 8000.0),
        ("audio/x-l16", "8000"),
        ("audio/x-l16", True),
        (None, 8000),
    ],
)
def test_unsupported_combinations_are_rejected(encoding, rate):
    with pytest.raises(UnsupportedFormat) as info:
        StreamFormat(encoding, rate)
    message = str(info.value)
    assert "supported: audio/x-mulaw;rate=8000, audio/x-l16;rate=8000, audio/x-l16;rate=16000" in (
        message
    )
    assert info.value.reason == "unsupported_format"
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("audio/x-l16;rate=16000", ("audio/x-l16", 16000)),
        ("AUDIO/X-L16; RATE=16000", ("audio/x-l16", 16000)),
        ("  audio/x-l16 ; rate = 8000 ", ("audio/x-l16", 8000)),
        ("audio/x-mulaw;rate=8000", ("audio/x-mulaw", 8000)),
        ("audio/x-mulaw", ("audio/x-mulaw", 8000)),
        ("audio/x-l16;channels=1;rate=8000", ("audio/x-l16", 8000)),
        ("audio/l16;rate=16000", ("audio/x-l16", 16000)),
    ],
)
def test_from_content_type_is_lenient(text, expected):
    assert StreamFormat.from_content_type(text) == StreamFormat(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "audio/x-l16",  # rate is ambiguous for L16
        "audio/x-l16;rate=44100",
        "audio/x-mulaw;rate=16000",
        "audio/x-l16;rate=abc",
        "audio/x-l16;rate=-8000",
        "audio/wav;rate=8000",
        "",
        "rate=8000",
    ],
)
def test_from_content_type_rejects(text):
    with pytest.raises(UnsupportedFormat, match="supported:"):
        StreamFormat.from_content_type(text)


def test_from_content_type_names_the_field():
    with pytest.raises(UnsupportedFormat) as info:
        StreamFormat.from_content_type("audio/x-l16;rate=44100", field="content_type")
    assert str(info.value).startswith("content_type: unsupported audio format")
    assert "44100" in str(info.value)
    assert info.value.field == "content_type"


@pytest.mark.parametrize(
    ("codec", "rate", "ctype"),
    [
        ("mulaw", 8000, "audio/x-mulaw;rate=8000"),
        ("ulaw", 8000, "audio/x-mulaw;rate=8000"),
        ("PCMU", 8000, "audio/x-mulaw;rate=8000"),
        ("l16", 8000, "audio/x-l16;rate=8000"),
        (" L16 ", 16000, "audio/x-l16;rate=16000"),
    ],
)
def test_from_short(codec, rate, ctype):
    assert StreamFormat.from_short(codec, rate).content_type == ctype


@pytest.mark.parametrize(("codec", "rate"), [("mulaw", 16000), ("opus", 8000), ("l16", 22050)])
def test_from_short_rejects(codec, rate):
    with pytest.raises(UnsupportedFormat, match="supported:"):
        StreamFormat.from_short(codec, rate)


def test_unsupported_format_errors_stay_short_for_huge_values() -> None:
    """Found by fuzzing: the offending value was quoted whole (thousands of characters)."""
    for value in ("9" * 5000, "audio/x-l16;rate=" + "1" * 3000, "audio/" + "x" * 10_000):
        with pytest.raises(UnsupportedFormat) as info:
            StreamFormat.from_content_type(value, field="start.mediaFormat")
        assert len(str(info.value)) < 250
        assert str(info.value).startswith("start.mediaFormat: unsupported audio format")
    with pytest.raises(UnsupportedFormat) as info:
        StreamFormat("x" * 10_000, 8000)
    assert len(str(info.value)) < 250
