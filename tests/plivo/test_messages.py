import base64
import json

import pytest

from voicebridge.plivo import (
    L16_8K,
    L16_16K,
    MULAW_8K,
    MediaEvent,
    PlayAudioEncoder,
    StreamFormat,
    checkpoint,
    clear_audio,
    parse_event,
    play_audio,
    send_dtmf,
)


@pytest.mark.parametrize(
    ("fmt", "ctype", "rate"),
    [
        (MULAW_8K, "audio/x-mulaw", 8000),
        (L16_8K, "audio/x-l16", 8000),
        (L16_16K, "audio/x-l16", 16000),
    ],
)
def test_play_audio_shape(fmt, ctype, rate):
    payload = bytes(range(256)) * 2 + b"\xff\xfe"
    text = play_audio(payload, fmt, "stream-1")
    assert json.loads(text) == {
        "event": "playAudio",
        "media": {
            "contentType": ctype,
            "sampleRate": rate,
            "payload": base64.b64encode(payload).decode("ascii"),
        },
        "streamId": "stream-1",
    }
    assert isinstance(json.loads(text)["media"]["sampleRate"], int)


def test_play_audio_without_stream_id():
    assert json.loads(play_audio(b"\x01", MULAW_8K)) == {
        "event": "playAudio",
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "AQ=="},
    }


def test_play_audio_empty_payload_and_buffer_types():
    assert json.loads(play_audio(b"", L16_8K, "s"))["media"]["payload"] == ""
    for buf in (bytearray(b"\x00\x01"), memoryview(b"\x00\x01")):
        assert json.loads(play_audio(buf, L16_8K, "s"))["media"]["payload"] == "AAE="


def test_play_audio_rejects_partial_l16_samples():
    with pytest.raises(ValueError, match="whole l16 samples, got 3 bytes"):
        play_audio(b"\x00\x01\x02", L16_16K, "s")
    play_audio(b"\x00\x01\x02", MULAW_8K, "s")  # any length is whole mu-law samples


def test_encoder_escapes_hostile_stream_id_once():
    sid = 'a"b\\c\n\u2028é'
    encoder = PlayAudioEncoder(L16_16K, sid)
    first = json.loads(encoder.encode(b"\x00\x00"))
    assert first["streamId"] == sid
    assert encoder.encode(b"\x00\x00").isascii()
    assert encoder.format is L16_16K and encoder.stream_id == sid


def test_encoder_matches_play_audio_and_json_dumps():
    encoder = PlayAudioEncoder(MULAW_8K, "s-1")
    payload = bytes(160)
    assert encoder.encode(payload) == play_audio(payload, MULAW_8K, "s-1")
    assert json.loads(encoder.encode(payload)) == json.loads(
        json.dumps(
            {
                "event": "playAudio",
                "media": {
                    "contentType": "audio/x-mulaw",
                    "sampleRate": 8000,
                    "payload": base64.b64encode(payload).decode(),
                },
                "streamId": "s-1",
            }
        )
    )


def test_encoder_rejects_non_format():
    with pytest.raises(TypeError):
        PlayAudioEncoder("audio/x-l16;rate=8000", "s")  # type: ignore[arg-type]


def test_play_audio_payload_round_trips_through_the_parser():
    payload = bytes(range(200)) * 3 + bytes(40)
    sent = json.loads(play_audio(payload, L16_8K, "s"))
    echoed = {"event": "media", "streamId": "s", "media": {"payload": sent["media"]["payload"]}}
    event = parse_event(json.dumps(echoed))
    assert isinstance(event, MediaEvent)
    assert event.payload == payload


def test_checkpoint():
    text = checkpoint("20170ada", "turn-3/piece-2")
    assert json.loads(text) == {
        "event": "checkpoint",
        "streamId": "20170ada",
        "name": "turn-3/piece-2",
    }
    assert json.loads(checkpoint("s", 'quote " and ünïcode'))["name"] == 'quote " and ünïcode'


def test_checkpoint_matches_faq_request():
    text = checkpoint("20170ada-f610-433b-8758-c02a2aab3662", "customer greeting audio")
    assert json.loads(text) == {
        "event": "checkpoint",
        "streamId": "20170ada-f610-433b-8758-c02a2aab3662",
        "name": "customer greeting audio",
    }


@pytest.mark.parametrize(("sid", "name"), [("", "n"), ("s", ""), (None, "n"), ("s", 3)])
def test_checkpoint_rejects_empty(sid, name):
    with pytest.raises(ValueError):
        checkpoint(sid, name)


def test_clear_audio():
    assert json.loads(clear_audio("b77e037d-4119-44b5-902d-25826b654539")) == {
        "event": "clearAudio",
        "streamId": "b77e037d-4119-44b5-902d-25826b654539",
    }
    with pytest.raises(ValueError):
        clear_audio("")


def test_send_dtmf():
    assert json.loads(send_dtmf("123")) == {"event": "sendDTMF", "dtmf": "123"}
    assert json.loads(send_dtmf("0123456789*#ABCD", "s")) == {
        "event": "sendDTMF",
        "dtmf": "0123456789*#ABCD",
        "streamId": "s",
    }


@pytest.mark.parametrize("digits", ["", "12a", "1 2", "E", "w", "\u0661", None, 5])
def test_send_dtmf_rejects(digits):
    with pytest.raises(ValueError, match="digits: expected"):
        send_dtmf(digits)


def test_outputs_are_compact_single_line_json():
    for text in (
        play_audio(b"\x00\x00", StreamFormat("audio/x-l16", 8000), "s"),
        checkpoint("s", "n"),
        clear_audio("s"),
        send_dtmf("1"),
    ):
        assert "\n" not in text
        assert ": " not in text and ", " not in text
