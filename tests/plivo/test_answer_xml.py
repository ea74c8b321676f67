import xml.etree.ElementTree as ET

import pytest

from voicebridge.plivo import L16_16K, UnsupportedFormat, dial_xml, hangup_xml, stream_xml

DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _stream(xml: str) -> ET.Element:
    assert xml.startswith(DECL)
    assert xml.endswith("</Response>\n")
    root = ET.fromstring(xml.encode())
    assert root.tag == "Response"
    assert len(root) == 1
    return root[0]


def test_defaults():
    xml = stream_xml("wss://agent.example/stream")
    el = _stream(xml)
    assert el.tag == "Stream"
    assert el.text == "wss://agent.example/stream"
    assert el.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-l16;rate=8000",
        "audioTrack": "inbound",
    }
    assert xml == (
        DECL + "<Response>\n"
        '  <Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-l16;rate=8000"'
        ' audioTrack="inbound">wss://agent.example/stream</Stream>\n'
        "</Response>\n"
    )


def test_all_options_like_protocol_md():
    el = _stream(
        stream_xml(
            "wss://agent.example/stream",
            content_type="audio/x-l16;rate=16000",
            stream_timeout=3600,
            status_callback_url="https://agent.example/status",
            status_callback_method="post",
            extra_headers={"tenant": "acme", "lang": "en"},
            noise_cancellation=True,
            noise_cancellation_level=85,
        )
    )
    assert el.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-l16;rate=16000",
        "audioTrack": "inbound",
        "streamTimeout": "3600",
        "statusCallbackUrl": "https://agent.example/status",
        "statusCallbackMethod": "POST",
        "extraHeaders": "tenant=acme,lang=en",
        "noiseCancellation": "true",
        "noiseCancellationLevel": "85",
    }


def test_one_way_stream_with_other_tracks():
    for track in ("outbound", "both", "inbound"):
        el = _stream(
            stream_xml("ws://x", bidirectional=False, keep_call_alive=False, audio_track=track)
        )
        assert el.attrib["bidirectional"] == "false"
        assert el.attrib["keepCallAlive"] == "false"
        assert el.attrib["audioTrack"] == track


def test_content_type_is_normalised_and_accepts_stream_format():
    el = _stream(stream_xml("wss://x", content_type=" AUDIO/X-MULAW ; rate = 8000"))
    assert el.attrib["contentType"] == "audio/x-mulaw;rate=8000"
    el = _stream(stream_xml("wss://x", content_type=L16_16K))
    assert el.attrib["contentType"] == "audio/x-l16;rate=16000"


def test_noise_cancellation_false():
    el = _stream(stream_xml("wss://x", noise_cancellation=False))
    assert el.attrib["noiseCancellation"] == "false"
    assert "noiseCancellationLevel" not in el.attrib


def test_url_and_attribute_escaping():
    url = "wss://agent.example/stream?a=1&b=<2>&c='\"'"
    cb = 'https://agent.example/status?x=1&y="q"'
    xml = stream_xml(url, status_callback_url=cb)
    el = _stream(xml)
    assert el.text == url
    assert el.attrib["statusCallbackUrl"] == cb
    assert "&b=<" not in xml


@pytest.mark.parametrize("headers", ["tenant=acme,lang=en", " tenant = acme , lang = en ,"])
def test_extra_headers_as_string(headers):
    assert _stream(stream_xml("wss://x", extra_headers=headers)).attrib["extraHeaders"] == (
        "tenant=acme,lang=en"
    )


def test_empty_extra_headers_are_omitted():
    for headers in ({}, "", None):
        assert "extraHeaders" not in _stream(stream_xml("wss://x", extra_headers=headers)).attrib


@pytest.mark.parametrize(
    ("headers", "bad"),
    [
        ({"tenant-id": "acme"}, "tenant-id"),
        ({"tenant": "ac me"}, "tenant"),
        ({"x": "a,b"}, "x"),
        ({"ünï": "1"}, "ünï"),
        ({"": "1"}, ""),
        ({"k": ""}, "k"),
        ("a=1,b=x&y", "b"),
    ],
)
def test_extra_headers_must_be_alphanumeric(headers, bad):
    with pytest.raises(ValueError, match=f"key {bad!r}"):
        stream_xml("wss://x", extra_headers=headers)


def test_extra_headers_without_equals():
    with pytest.raises(ValueError, match="expected key=value"):
        stream_xml("wss://x", extra_headers="a=1,oops")


def test_extra_headers_size_limit():
    ok = {f"k{i:03d}": "v" * 7 for i in range(42)}  # 42 * 12 + 41 commas = 545 bytes
    with pytest.raises(ValueError, match="at most 512 bytes"):
        stream_xml("wss://x", extra_headers=ok)
    fits = {"k": "v" * 510}  # exactly 512 bytes
    assert len(_stream(stream_xml("wss://x", extra_headers=fits)).attrib["extraHeaders"]) == 512


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"content_type": "audio/x-l16;rate=44100"}, "supported:"),
        ({"content_type": "audio/x-mulaw;rate=16000"}, "supported:"),
        ({"audio_track": "both"}, "bidirectional streams require 'inbound'"),
        ({"audio_track": "outbound"}, "bidirectional streams require 'inbound'"),
        ({"audio_track": "sideways", "bidirectional": False}, "audio_track: expected one of"),
        ({"noise_cancellation_level": 59}, "60..100"),
        ({"noise_cancellation_level": 101}, "60..100"),
        ({"noise_cancellation_level": True}, "60..100"),
        ({"status_callback_method": "PUT"}, "GET or POST"),
        ({"status_callback_url": "ftp://x"}, "http"),
        ({"stream_timeout": 0}, "positive seconds"),
        ({"stream_timeout": -5}, "positive seconds"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stream_xml("wss://agent.example/stream", **kwargs)


def test_unsupported_content_type_is_unsupported_format():
    with pytest.raises(UnsupportedFormat, match=r"^content_type: "):
        stream_xml("wss://x", content_type="audio/x-l16;rate=44100")


@pytest.mark.parametrize(
    "url", ["https://agent.example", "agent.example/ws", "wss://", "ws:///path", "wss://a b", ""]
)
def test_invalid_urls(url):
    with pytest.raises(ValueError, match="url:"):
        stream_xml(url)


def test_status_method_get_and_boundaries():
    el = _stream(stream_xml("WSS://x", status_callback_method="get", noise_cancellation_level=60))
    assert el.attrib["statusCallbackMethod"] == "GET"
    assert el.attrib["noiseCancellationLevel"] == "60"
    el = _stream(stream_xml("wss://x", noise_cancellation_level=100))
    assert el.attrib["noiseCancellationLevel"] == "100"


def test_dial_number():
    xml = dial_xml("+14155550100", caller_id="14155550199")
    root = ET.fromstring(xml.encode())
    dial = root.find("Dial")
    assert dial is not None
    assert dial.attrib == {"callerId": "14155550199"}
    assert [(c.tag, c.text) for c in dial] == [("Number", "+14155550100")]
    assert xml.startswith(DECL)


def test_dial_sip_user_without_caller_id():
    root = ET.fromstring(dial_xml("sip:agent@phone.plivo.com").encode())
    dial = root.find("Dial")
    assert dial is not None and dial.attrib == {}
    assert [(c.tag, c.text) for c in dial] == [("User", "sip:agent@phone.plivo.com")]


def test_dial_escapes():
    root = ET.fromstring(dial_xml("sip:a&b<c>@x", caller_id='"1"&').encode())
    dial = root.find("Dial")
    assert dial is not None
    assert dial.attrib["callerId"] == '"1"&'
    assert dial[0].text == "sip:a&b<c>@x"


@pytest.mark.parametrize("number", ["", "   "])
def test_dial_rejects_empty(number):
    with pytest.raises(ValueError, match="number:"):
        dial_xml(number)
    with pytest.raises(ValueError, match="caller_id:"):
        dial_xml("123", caller_id=number)


def test_hangup():
    xml = hangup_xml()
    root = ET.fromstring(xml.encode())
    assert [c.tag for c in root] == ["Hangup"]
    assert xml.startswith(DECL)
