"""Vectors: base strings written by hand from PROTOCOL.md; signatures computed independently
with ``printf '%s' "$base.12345" | openssl dgst -sha256 -hmac tok3n -binary | base64``."""

import base64
import hashlib
import hmac

import pytest

from voicebridge.plivo import compute_v3_signature, v3_signature_base, validate_v3_signature

TOKEN = "tok3n"
NONCE = "12345"

GET_SIG = "JOvnsd0pZL/At0nWcNDynUnbpLOpnctvvSpQPX2El2s="
POST_SIG = "GJbODZEEytZJwUlYVyXynmU8OcV/Sl/D2yR3kE+Jyzk="
POST_QUERY_SIG = "o0pIWIJk3RL812NXwyqrF1KaYd22Mm9JYIAYNfSqzHM="
POST_LIST_SIG = "DJm8bEzGZ/fQM+ZLTAYse1ksg9ZylhVZJfZR0HVfx7A="


def _hmac(base: str) -> str:
    digest = hmac.new(TOKEN.encode(), f"{base}.{NONCE}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("method", "url", "params", "base"),
    [
        # GET: the URL's query, sorted.
        ("GET", "https://example.com/answer?b=2&a=1", {}, "https://example.com/answer?a=1&b=2"),
        # GET: params merged with the URL query.
        (
            "GET",
            "https://example.com/answer?x=1",
            {"CallUUID": "abc"},
            "https://example.com/answer?CallUUID=abc&x=1",
        ),
        # GET: list values sorted and repeated.
        ("GET", "https://h/a", {"k": ["b", "a"], "j": "1"}, "https://h/a?j=1&k=a&k=b"),
        ("GET", "https://h/a?k=b&k=a", {}, "https://h/a?k=a&k=b"),
        # GET without anything: bare URL; fragments dropped, ports kept.
        ("GET", "https://h:8443/a#frag", {}, "https://h:8443/a"),
        # POST without URL query: '?' then keyvalue pairs.
        (
            "POST",
            "https://h.example/answer",
            {"From": "123", "CallUUID": "abc"},
            "https://h.example/answer?CallUUIDabcFrom123",
        ),
        # POST with URL query: '?' query '.' then keyvalue pairs.
        (
            "POST",
            "https://h.example/answer?z=9&a=1",
            {"To": "555"},
            "https://h.example/answer?a=1&z=9.To555",
        ),
        # POST list values.
        (
            "POST",
            "https://h.example/answer",
            {"Digits": ["9", "1"], "A": "x"},
            "https://h.example/answer?AxDigits1Digits9",
        ),
        # POST without params behaves like GET of the URL.
        ("POST", "https://h/a?x=1", {}, "https://h/a?x=1"),
        ("post", "https://h/a", {}, "https://h/a"),
        # Values are signed decoded, as received; keys sort by code point.
        ("GET", "https://h/a?q=a%20b&e=", {"Z": "1"}, "https://h/a?Z=1&e=&q=a b"),
    ],
)
def test_base_strings(method, url, params, base):
    assert v3_signature_base(method, url, params) == base
    assert compute_v3_signature(method, url, params, NONCE, TOKEN) == _hmac(base)


@pytest.mark.parametrize(
    ("method", "url", "params", "expected"),
    [
        ("GET", "https://example.com/answer?b=2&a=1", {}, GET_SIG),
        ("POST", "https://h.example/answer", {"From": "123", "CallUUID": "abc"}, POST_SIG),
        ("POST", "https://h.example/answer?z=9&a=1", {"To": "555"}, POST_QUERY_SIG),
        ("POST", "https://h.example/answer", {"Digits": ["9", "1"], "A": "x"}, POST_LIST_SIG),
    ],
)
def test_fixed_vectors(method, url, params, expected):
    assert compute_v3_signature(method, url, params, NONCE, TOKEN) == expected
    assert validate_v3_signature(method, url, params, NONCE, expected, TOKEN)


def test_params_are_not_mutated():
    params = {"k": ["b", "a"]}
    v3_signature_base("GET", "https://h/a?x=1", params)
    assert params == {"k": ["b", "a"]}


def test_unsupported_method():
    with pytest.raises(ValueError, match="GET or POST"):
        v3_signature_base("PUT", "https://h/a", {})
    assert not validate_v3_signature("PUT", "https://h/a", {}, NONCE, GET_SIG, TOKEN)


def test_header_with_several_signatures():
    url, params = "https://h.example/answer", {"From": "123", "CallUUID": "abc"}
    assert validate_v3_signature("POST", url, params, NONCE, f"bogus,{POST_SIG}", TOKEN)
    assert validate_v3_signature("POST", url, params, NONCE, f"{POST_SIG}, other", TOKEN)
    assert validate_v3_signature("POST", url, params, NONCE, f"x , {POST_SIG} ", TOKEN)


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "12346"},
        {"auth_token": "tok3m"},
        {"params": {"From": "124", "CallUUID": "abc"}},
        {"params": {"From": "123"}},
        {"url": "https://h.example/answer2"},
        {"url": "http://h.example/answer"},
        {"method": "GET"},
        {"signature_header": ""},
        {"signature_header": "bogus,also-bogus"},
        {"signature_header": "ünïcode"},
        {"auth_token": ""},
    ],
)
def test_rejections(change):
    args = {
        "method": "POST",
        "url": "https://h.example/answer",
        "params": {"From": "123", "CallUUID": "abc"},
        "nonce": NONCE,
        "signature_header": POST_SIG,
        "auth_token": TOKEN,
    }
    assert validate_v3_signature(**args)
    args.update(change)
    assert not validate_v3_signature(**args)
