import base64
import json

import pytest

from voicebridge.plivo import (
    ClearedAudioEvent,
    DtmfEvent,
    ErrorEvent,
    InvalidField,
    MalformedMessage,
    MediaEvent,
    MissingField,
    PlayedStreamEvent,
    PlayFailedEvent,
    ProtocolError,
    StartEvent,
    StopEvent,
    StreamFormat,
    UnknownEvent,
    UnsupportedFormat,
    parse_event,
)

# --- samples straight from Plivo's Audio Stream FAQ ------------------------------------------

FAQ_START = """{

  "sequenceNumber": 0,

  "event": "start",

  "start": {

    "callId": "8c43a765-94fa-4ee9-b9a3-242703e41f63",

    "streamId": "b77e037d-4119-44b5-902d-25826b654539",

    "accountId": "155747",

    "tracks": [

      "inbound",

      "outbound"

    ],

    "mediaFormat": {

      "encoding": "audio/x-l16",

      "sampleRate": 8000

    }

  },

  "extra_headers": "{}"

}"""

FAQ_PAYLOAD = "CAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgACAAIAAgA" * 4
FAQ_MEDIA = """{
  "sequenceNumber": 887,
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
  "event": "media",
  "media": {
    "track": "inbound",
    "timestamp": "1687353805345",
    "chunk": 469,
    "payload": "PAYLOAD"
  },
  "extra_headers": "{}"
}""".replace("PAYLOAD", FAQ_PAYLOAD)

FAQ_PLAYED = """{
  "event": "played",
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
  "name": "customer greeting audio"
}"""

FAQ_CLEARED = """{
  "sequenceNumber": 0,
  "event": "clearedAudio",
  "streamId": "20170ada-f610-433b-8758-c02a2aab3662"
}"""


def _dumps(obj) -> str:
    return json.dumps(obj)


def _start(**overrides):
    message = {
        "sequenceNumber": 1,
        "event": "start",
        "start": {
            "callId": "call-1",
            "streamId": "stream-1",
            "accountId": "MA123",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        },
        "extra_headers": "tenant=acme;lang=en",
    }
    message.update(overrides)
    return message


def _media(**media_overrides):
    media = {"track": "inbound", "timestamp": "1000", "chunk": 1, "payload": "AAEC"}
    media.update(media_overrides)
    return {"sequenceNumber": 2, "streamId": "stream-1", "event": "media", "media": media}


# --- start -----------------------------------------------------------------------------------


def test_faq_start():
    event = parse_event(FAQ_START)
    assert event == StartEvent(
        sequence_number=0,
        call_id="8c43a765-94fa-4ee9-b9a3-242703e41f63",
        stream_id="b77e037d-4119-44b5-902d-25826b654539",
        account_id="155747",
        tracks=("inbound", "outbound"),
        format=StreamFormat("audio/x-l16", 8000),
        extra_headers={},
    )


def test_protocol_md_start():
    event = parse_event(_dumps(_start()))
    assert isinstance(event, StartEvent)
    assert event.sequence_number == 1
    assert (event.call_id, event.stream_id, event.account_id) == ("call-1", "stream-1", "MA123")
    assert event.tracks == ("inbound",)
    assert event.format == StreamFormat("audio/x-mulaw", 8000)
    assert event.extra_headers == {"tenant": "acme", "lang": "en"}


@pytest.mark.parametrize("rate", ["16000", 16000, 16000.0, " 16000 "])
def test_start_sample_rate_number_or_string(rate):
    msg = _start()
    msg["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": rate}
    event = parse_event(_dumps(msg))
    assert isinstance(event, StartEvent)
    assert event.format == StreamFormat("audio/x-l16", 16000)


def test_start_encoding_with_rate_suffix_and_case():
    msg = _start()
    msg["start"]["mediaFormat"] = {"encoding": "Audio/X-L16;rate=16000", "sampleRate": 16000}
    event = parse_event(_dumps(msg))
    assert event.format == StreamFormat("audio/x-l16", 16000)


def test_start_numeric_account_id_and_missing_optional_fields():
    msg = _start(extra_headers=None)
    msg["start"]["accountId"] = 155747
    del msg["start"]["tracks"]
    event = parse_event(_dumps(msg))
    assert event.account_id == "155747"
    assert event.tracks == ("inbound",)
    assert event.extra_headers == {}
    del msg["start"]["accountId"]
    del msg["sequenceNumber"]
    event = parse_event(_dumps(msg))
    assert event.account_id == ""
    assert event.sequence_number is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("{}", {}),
        ("tenant=acme;lang=en", {"tenant": "acme", "lang": "en"}),
        ("tenant=acme,lang=en", {"tenant": "acme", "lang": "en"}),
        ('{"tenant": "acme", "n": 3}', {"tenant": "acme", "n": "3"}),
        ({"tenant": "acme"}, {"tenant": "acme"}),
        ("", {}),
    ],
)
def test_start_extra_headers_forms(headers, expected):
    assert parse_event(_dumps(_start(extra_headers=headers))).extra_headers == expected


def test_start_extra_headers_inside_start_object_is_found():
    msg = _start()
    del msg["extra_headers"]
    msg["start"]["extra_headers"] = "a=1"
    assert parse_event(_dumps(msg)).extra_headers == {"a": "1"}


def test_start_without_media_format():
    msg = _start()
    del msg["start"]["mediaFormat"]
    with pytest.raises(MissingField, match=r"^start\.mediaFormat: required field is missing$"):
        parse_event(_dumps(msg))


def test_start_without_start_object():
    with pytest.raises(MissingField, match=r"^start:"):
        parse_event('{"event": "start"}')
    with pytest.raises(InvalidField, match=r"^start: expected object, got 'x'"):
        parse_event('{"event": "start", "start": "x"}')


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("callId", "start.callId"),
        ("streamId", "start.streamId"),
    ],
)
def test_start_required_ids(field, path):
    msg = _start()
    del msg["start"][field]
    with pytest.raises(MissingField) as info:
        parse_event(_dumps(msg))
    assert info.value.field == path
    msg["start"][field] = 42
    with pytest.raises(InvalidField, match=rf"^{path}: expected string, got 42$"):
        parse_event(_dumps(msg))
    msg["start"][field] = ""
    with pytest.raises(InvalidField, match=rf"^{path}: expected non-empty string, got ''$"):
        parse_event(_dumps(msg))


@pytest.mark.parametrize("key", ["encoding", "sampleRate"])
def test_start_media_format_required_parts(key):
    msg = _start()
    del msg["start"]["mediaFormat"][key]
    with pytest.raises(MissingField, match=rf"^start\.mediaFormat\.{key}:"):
        parse_event(_dumps(msg))


@pytest.mark.parametrize("rate", ["fast", -8000, True, [8000], "8000.5", "٨٠٠٠"])
def test_start_bad_sample_rate(rate):
    msg = _start()
    msg["start"]["mediaFormat"]["sampleRate"] = rate
    with pytest.raises(InvalidField, match=r"^start\.mediaFormat\.sampleRate: expected"):
        parse_event(_dumps(msg))


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("audio/x-l16", 44100), ("audio/x-mulaw", 16000), ("audio/x-opus", 48000), ("", 8000)],
)
def test_start_unsupported_format(encoding, rate):
    msg = _start()
    msg["start"]["mediaFormat"] = {"encoding": encoding, "sampleRate": rate}
    with pytest.raises(UnsupportedFormat) as info:
        parse_event(_dumps(msg))
    text = str(info.value)
    assert text.startswith("start.mediaFormat: unsupported audio format")
    assert str(rate) in text
    assert "supported: audio/x-mulaw;rate=8000" in text
    assert info.value.field == "start.mediaFormat"


def test_start_bad_tracks_and_account():
    msg = _start()
    msg["start"]["tracks"] = "inbound"
    with pytest.raises(InvalidField, match=r"^start\.tracks: expected list of strings"):
        parse_event(_dumps(msg))
    msg = _start()
    msg["start"]["accountId"] = {"id": 1}
    with pytest.raises(InvalidField, match=r"^start\.accountId: expected string or integer"):
        parse_event(_dumps(msg))


def test_start_bad_extra_headers_type():
    with pytest.raises(InvalidField, match=r"^extra_headers: expected string or object, got 5$"):
        parse_event(_dumps(_start(extra_headers=5)))


# --- media -----------------------------------------------------------------------------------


def test_faq_media():
    event = parse_event(FAQ_MEDIA)
    assert isinstance(event, MediaEvent)
    assert event.sequence_number == 887
    assert event.stream_id == "20170ada-f610-433b-8758-c02a2aab3662"
    assert event.track == "inbound"
    assert event.timestamp_ms == 1687353805345
    assert event.chunk == 469
    assert event.payload == base64.b64decode(FAQ_PAYLOAD)
    assert event.payload[:4] == b"\x08\x00\x08\x00"


def test_media_numeric_timestamp_string_chunk_and_outbound_track():
    event = parse_event(_dumps(_media(timestamp=1687353805345, chunk="470", track="outbound")))
    assert (event.timestamp_ms, event.chunk, event.track) == (1687353805345, 470, "outbound")


def test_media_defaults_when_optional_fields_absent():
    msg = {"event": "media", "media": {"payload": ""}}
    event = parse_event(_dumps(msg))
    assert event == MediaEvent(None, None, "inbound", None, None, b"")


def test_media_twenty_ms_sizes_round_trip():
    for size in (160, 320, 640, 7):
        raw = bytes(range(256))[:size] if size <= 256 else bytes(size)
        event = parse_event(_dumps(_media(payload=base64.b64encode(raw).decode())))
        assert event.payload == raw


@pytest.mark.parametrize("payload", ["abc$", "AAE", "AA==AA==", "AAEC\n", " AAEC", "ÄÄÄÄ"])
def test_media_invalid_base64(payload):
    with pytest.raises(InvalidField) as info:
        parse_event(_dumps(_media(payload=payload)))
    assert info.value.field == "media.payload"
    assert str(info.value).startswith("media.payload: expected base64 text, got ")


def test_media_invalid_base64_message_matches_spec():
    with pytest.raises(InvalidField, match=r"^media\.payload: expected base64 text, got 'abc\$'$"):
        parse_event(_dumps(_media(payload="abc$")))


def test_media_invalid_base64_long_payload_is_truncated_in_message():
    with pytest.raises(InvalidField) as info:
        parse_event(_dumps(_media(payload="$" * 100_000)))
    assert len(str(info.value)) < 150


def test_media_without_payload():
    msg = _media()
    del msg["media"]["payload"]
    with pytest.raises(MissingField, match=r"^media\.payload: required field is missing$"):
        parse_event(_dumps(msg))


def test_media_null_or_non_string_payload():
    with pytest.raises(MissingField, match=r"^media\.payload"):
        parse_event(_dumps(_media(payload=None)))
    with pytest.raises(InvalidField, match=r"^media\.payload: expected string, got 123$"):
        parse_event(_dumps(_media(payload=123)))


def test_media_without_media_object():
    with pytest.raises(MissingField, match=r"^media: required field is missing$"):
        parse_event('{"event": "media"}')
    with pytest.raises(InvalidField, match=r"^media: expected object, got \[\]$"):
        parse_event('{"event": "media", "media": []}')


@pytest.mark.parametrize(
    ("key", "value"),
    [("timestamp", "soon"), ("timestamp", -1), ("chunk", "1.5"), ("chunk", False), ("chunk", {})],
)
def test_media_bad_numbers(key, value):
    with pytest.raises(InvalidField, match=rf"^media\.{key}: expected non-negative integer"):
        parse_event(_dumps(_media(**{key: value})))


def test_media_bad_track_and_stream_id():
    with pytest.raises(InvalidField, match=r"^media\.track: expected string"):
        parse_event(_dumps(_media(track=1)))
    msg = _media()
    msg["streamId"] = 7
    with pytest.raises(InvalidField, match=r"^streamId: expected string, got 7$"):
        parse_event(_dumps(msg))


# --- sequence numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        ("12", 12),
        (2**63 + 1, 2**63 + 1),
        (str(10**40), 10**40),
        (10**300, 10**300),
        (None, None),
    ],
)
def test_sequence_numbers(raw, expected):
    msg = {"event": "clearedAudio", "sequenceNumber": raw}
    assert parse_event(_dumps(msg)).sequence_number == expected


@pytest.mark.parametrize("raw", [-1, "-1", "abc", "", True, 1.5, [], "9" * 5000])
def test_bad_sequence_numbers(raw):
    with pytest.raises(InvalidField, match=r"^sequenceNumber: expected non-negative integer"):
        parse_event(_dumps({"event": "clearedAudio", "sequenceNumber": raw}))


def test_huge_integer_literal_beyond_python_limit_is_malformed():
    with pytest.raises(MalformedMessage):
        parse_event('{"event": "clearedAudio", "sequenceNumber": ' + "9" * 5000 + "}")


# --- dtmf ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digit", "expected"),
    [("5", "5"), ("*", "*"), ("#", "#"), ("A", "A"), ("d", "D"), (7, "7"), (0, "0")],
)
def test_dtmf(digit, expected):
    msg = {"event": "dtmf", "streamId": "s", "sequenceNumber": "3", "dtmf": {"digit": digit}}
    assert parse_event(_dumps(msg)) == DtmfEvent(3, "s", expected)


def test_protocol_md_dtmf_sample():
    event = parse_event('{"event": "dtmf", "streamId": "…", "dtmf": {"digit": "5"}}')
    assert event == DtmfEvent(None, "…", "5")


@pytest.mark.parametrize("digit", ["55", "E", "", 10, -1, True, 5.0, ["5"]])
def test_dtmf_bad_digit(digit):
    with pytest.raises(InvalidField, match=r"^dtmf\.digit: expected one of 0-9 \* # A-D"):
        parse_event(_dumps({"event": "dtmf", "dtmf": {"digit": digit}}))


def test_dtmf_missing_parts():
    with pytest.raises(MissingField, match=r"^dtmf:"):
        parse_event('{"event": "dtmf"}')
    with pytest.raises(MissingField, match=r"^dtmf\.digit:"):
        parse_event('{"event": "dtmf", "dtmf": {}}')
    with pytest.raises(InvalidField, match=r"^dtmf: expected object"):
        parse_event('{"event": "dtmf", "dtmf": "5"}')


# --- checkpoint acks -------------------------------------------------------------------------


def test_faq_played_form():
    event = parse_event(FAQ_PLAYED)
    assert event == PlayedStreamEvent(
        None, "20170ada-f610-433b-8758-c02a2aab3662", "customer greeting audio"
    )


def test_played_stream_form():
    msg = (
        '{"event": "playedStream", "sequenceNumber": 12, "streamId": "s", "name": "turn-3/piece-2"}'
    )
    assert parse_event(msg) == PlayedStreamEvent(12, "s", "turn-3/piece-2")


@pytest.mark.parametrize("event", ["played", "playedStream"])
def test_played_without_stream_id_or_sequence(event):
    assert parse_event(_dumps({"event": event, "name": "n"})) == PlayedStreamEvent(None, None, "n")


@pytest.mark.parametrize("event", ["played", "playedStream"])
def test_played_needs_a_name(event):
    with pytest.raises(MissingField, match=r"^name:"):
        parse_event(_dumps({"event": event, "streamId": "s"}))
    with pytest.raises(InvalidField, match=r"^name: expected string, got 3$"):
        parse_event(_dumps({"event": event, "name": 3}))


def test_faq_cleared_audio():
    assert parse_event(FAQ_CLEARED) == ClearedAudioEvent(0, "20170ada-f610-433b-8758-c02a2aab3662")


def test_cleared_audio_without_stream_id():
    assert parse_event('{"event": "clearedAudio"}') == ClearedAudioEvent(None, None)


# --- undocumented events ---------------------------------------------------------------------


def test_stop_event():
    assert parse_event('{"event": "stop", "streamId": "s", "reason": "hangup"}') == StopEvent(
        None, "s", "hangup"
    )
    assert parse_event('{"event": "stop", "stop": {"reason": "x"}}') == StopEvent(None, None, "x")
    assert parse_event('{"event": "stop"}') == StopEvent(None, None, None)


def test_play_failed_event():
    msg = {"event": "playFailed", "sequenceNumber": 4, "streamId": "s", "name": "n", "reason": "r"}
    assert parse_event(_dumps(msg)) == PlayFailedEvent(4, "s", "n", "r")
    assert parse_event('{"event": "playFailed"}') == PlayFailedEvent(None, None, None, None)


def test_error_event_with_structured_reason_is_kept_as_text():
    assert parse_event('{"event": "error", "reason": "boom"}') == ErrorEvent(None, None, "boom")
    event = parse_event('{"event": "error", "reason": {"code": 5}}')
    assert event == ErrorEvent(None, None, '{"code":5}')


def test_unknown_event_with_extra_fields():
    msg = {"event": "mark", "sequenceNumber": "x", "mark": {"name": "a"}, "nested": [1, 2]}
    event = parse_event(_dumps(msg))
    assert isinstance(event, UnknownEvent)
    assert event.event == "mark"
    assert event.raw == msg


def test_unknown_fields_are_tolerated_everywhere():
    msg = _media(volume=3)
    msg["foo"] = {"bar": [1]}
    event = parse_event(_dumps(msg))
    assert isinstance(event, MediaEvent)
    msg = _start(custom=True)
    msg["start"]["mediaFormat"]["channels"] = 1
    msg["start"]["x"] = None
    assert isinstance(parse_event(_dumps(msg)), StartEvent)


def test_event_names_are_case_sensitive():
    assert isinstance(parse_event('{"event": "Media"}'), UnknownEvent)


# --- hostile frames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "{",
        '{"event": "media"',
        "[1, 2]",
        "null",
        "42",
        '"media"',
        "true",
        "[" * 100_000,
    ],
)
def test_not_a_json_object(frame):
    with pytest.raises(MalformedMessage) as info:
        parse_event(frame)
    assert info.value.reason == "malformed_message"


def test_json_non_object_message_names_the_type():
    with pytest.raises(MalformedMessage, match="expected a JSON object, got list"):
        parse_event("[]")
    with pytest.raises(MalformedMessage, match="expected a JSON object, got NoneType"):
        parse_event("null")


@pytest.mark.parametrize("frame", [b'{"event": "media"}', bytearray(b"\x00\x01"), memoryview(b"")])
def test_binary_frames_are_rejected(frame):
    with pytest.raises(MalformedMessage, match="binary frames are not part of Plivo's protocol"):
        parse_event(frame)


def test_missing_event():
    with pytest.raises(MissingField, match=r"^event: required field is missing$"):
        parse_event('{"streamId": "s"}')
    with pytest.raises(MissingField, match=r"^event:"):
        parse_event('{"event": null}')


@pytest.mark.parametrize("name", [1, ["media"], {"a": 1}, True])
def test_event_not_a_string(name):
    with pytest.raises(InvalidField, match=r"^event: expected string, got "):
        parse_event(_dumps({"event": name}))


def test_every_error_is_a_protocol_error():
    hostile = ["x", "[]", "{}", '{"event": 1}', '{"event": "media", "media": {"payload": "%"}}']
    for frame in hostile:
        with pytest.raises(ProtocolError):
            parse_event(frame)


def test_events_are_frozen_and_slotted():
    event = parse_event(FAQ_CLEARED)
    with pytest.raises(AttributeError):
        event.stream_id = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


@pytest.mark.parametrize("seq", [0, 7, 2**63 + 1, 10**40, "12"])
def test_media_numbers_read_exactly(seq):
    """The media event's fast JSON path gives the same numbers as json (no float rounding)."""
    msg = {
        "event": "media",
        "sequenceNumber": seq,
        "media": {"payload": "AAAA", "chunk": 10**30, "timestamp": "1687353805345"},
    }
    event = parse_event(_dumps(msg))
    assert event.sequence_number == int(seq)
    assert event.chunk == 10**30
    assert event.timestamp_ms == 1687353805345
