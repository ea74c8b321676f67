"""The stream-token codec and the used-token store, without a server."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from voicebridge.server.stream_token import (
    Claim,
    MemoryTokenStore,
    StreamTokenCodec,
    TokenError,
)

SECRET = b"s3cret-for-tests-only-0123456789"


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def codec(
    clock: Clock | None = None, secret: bytes = SECRET, ttl_s: float = 60
) -> StreamTokenCodec:
    return StreamTokenCodec(secret, ttl_s=ttl_s, time_fn=clock or Clock())


def test_round_trip_names_the_call_and_expiry() -> None:
    clock = Clock(1000.0)
    c = codec(clock)
    token = c.mint("5a0e1f52-2c7e-4b4e-9c55-3f0c3a1b2d4e")
    claims = c.verify(token)
    assert claims.call_id == "5a0e1f52-2c7e-4b4e-9c55-3f0c3a1b2d4e"
    assert claims.expires_at == 1060
    assert len(claims.jti) >= 16
    # URL-safe and compact: nothing to escape in a query string or in XML text.
    assert quote(token, safe=".") == token
    assert all(ch not in token for ch in "&<>\"'=+/ ")
    assert len(token) < 200


def test_each_token_is_unique() -> None:
    c = codec()
    assert len({c.verify(c.mint("call")).jti for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("no-dot", "malformed"),
        ("a.b.c", "malformed"),
        ("x" * 600 + ".y", "malformed"),
        ("payload.!!notbase64!!", "malformed"),
        ("pay\u00e9load.AAAA", "malformed"),
    ],
)
def test_malformed_tokens_are_refused(text: str | None, reason: str) -> None:
    with pytest.raises(TokenError) as err:
        codec().verify(text)
    assert err.value.reason == reason


def test_tampered_payload_is_refused() -> None:
    c = codec()
    payload, mac = c.mint("call-a").split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    forged = raw.replace("call-a", "call-b").encode()
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        c.verify(f"{forged_payload}.{mac}")
    assert err.value.reason == "bad_signature"


def test_flipped_mac_character_is_refused() -> None:
    c = codec()
    token = c.mint("call")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError) as err:
        c.verify(flipped)
    assert err.value.reason == "bad_signature"


def test_token_of_another_secret_is_refused() -> None:
    other = codec(secret=b"another-secret-of-32-bytes-000000")
    with pytest.raises(TokenError) as err:
        codec().verify(other.mint("call"))
    assert err.value.reason == "bad_signature"


def test_codec_needs_a_real_secret_and_a_call() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        StreamTokenCodec(b"short")
    with pytest.raises(ValueError, match="ttl_s"):
        StreamTokenCodec(SECRET, ttl_s=0)
    c = codec()
    for bad in ("", "x" * 129, "line\nbreak"):
        with pytest.raises(ValueError, match="call_id"):
            c.mint(bad)
    assert "s3cret" not in repr(c)


# --- the store ----------------------------------------------------------------------------------
def store(clock: Clock, window: float = 60.0) -> MemoryTokenStore:
    return MemoryTokenStore(max_connections=3, reconnect_window_s=window, time_fn=clock)


def test_one_live_connection_at_a_time() -> None:
    clock = Clock(0.0)
    s = store(clock)
    assert s.claim("j", "call", 60) is Claim.OK
    assert s.claim("j", "call", 60) is Claim.IN_USE
    s.release("j")
    assert s.claim("j", "call", 60) is Claim.OK


def test_three_connections_in_all() -> None:
    clock = Clock(0.0)
    s = store(clock)
    for _ in range(3):
        assert s.claim("j", "call", 60).ok
        s.release("j")
    assert s.claim("j", "call", 60) is Claim.REUSED


def test_never_after_the_call_ended() -> None:
    clock = Clock(0.0)
    s = store(clock)
    assert s.claim("j", "call", 60).ok
    s.finish("j")
    assert s.claim("j", "call", 60) is Claim.CALL_ENDED
    clock.now = 61.0  # after expiry the entry is forgotten, and the token is simply expired
    assert s.claim("j", "call", 60) is Claim.EXPIRED
    assert len(s) == 0


def test_first_connection_only_before_expiry() -> None:
    clock = Clock(60.0)
    s = store(clock)
    assert s.claim("j", "call", 60) is Claim.EXPIRED
    assert len(s) == 0  # a refused token leaves nothing behind


def test_reconnection_after_a_drop_outlives_the_expiry_within_the_window() -> None:
    """A call dropped ten minutes in comes back with its old token: that is Plivo's retry."""
    clock = Clock(0.0)
    s = store(clock, window=30.0)
    assert s.claim("j", "call", 60).ok
    clock.now = 600.0
    s.release("j")
    clock.now = 620.0
    assert s.claim("j", "call", 60).ok
    clock.now = 700.0
    s.release("j")
    clock.now = 731.0  # the drop was 31 s ago: too late
    assert s.claim("j", "call", 60) is Claim.EXPIRED


def test_live_entries_are_kept_and_stale_ones_pruned() -> None:
    clock = Clock(0.0)
    s = store(clock, window=10.0)
    for i in range(100):
        assert s.claim(f"j{i}", "call", 60).ok
    for i in range(50):
        s.release(f"j{i}")
    clock.now = 100.0
    assert s.claim("fresh", "call", 160).ok  # pruning happens on claims
    assert len(s) == 51  # the 50 live ones and the new one
    assert s.claim("j60", "call", 60) is Claim.IN_USE


def test_a_tokened_url_survives_the_answer_xml() -> None:
    """The XML escapes what a query may hold; Plivo reads back exactly the URL we minted."""
    import xml.etree.ElementTree as ET

    from voicebridge.plivo.answer_xml import stream_xml

    url = f"wss://agent.example/stream?tenant=a&token={codec().mint('call')}"
    xml = stream_xml(url, content_type="audio/x-l16;rate=16000")
    assert "&amp;token=" in xml
    stream = ET.fromstring(xml).find("Stream")
    assert stream is not None and stream.text == url
