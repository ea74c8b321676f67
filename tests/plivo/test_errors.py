import pickle

import pytest

from voicebridge.plivo import (
    InvalidField,
    MalformedMessage,
    MissingField,
    ProtocolError,
    UnsupportedFormat,
)
from voicebridge.plivo.errors import short_repr


def test_hierarchy_is_value_error():
    for cls in (MalformedMessage, MissingField, InvalidField, UnsupportedFormat):
        assert issubclass(cls, ProtocolError)
        assert issubclass(cls, ValueError)


def test_reasons_are_distinct_slugs():
    errors = [
        MalformedMessage("x"),
        MissingField("media.payload"),
        InvalidField("media.payload", "base64 text", "abc$"),
        UnsupportedFormat("nope"),
    ]
    reasons = [e.reason for e in errors]
    assert len(set(reasons)) == 4
    assert all(r.replace("_", "").isalpha() and r.islower() for r in reasons)


def test_missing_field_message():
    err = MissingField("start.mediaFormat")
    assert err.field == "start.mediaFormat"
    assert str(err) == "start.mediaFormat: required field is missing"


def test_invalid_field_message_matches_spec_example():
    err = InvalidField("media.payload", "base64 text", "abc$")
    assert str(err) == "media.payload: expected base64 text, got 'abc$'"
    assert (err.field, err.expected, err.got) == ("media.payload", "base64 text", "abc$")


@pytest.mark.parametrize(
    "value", ["x" * 10_000, b"y" * 10_000, list(range(10_000)), {str(i): i for i in range(1000)}]
)
def test_got_repr_is_short(value):
    err = InvalidField("f", "something", value)
    got = str(err).split(", got ", 1)[1]
    assert len(got) < 80


def test_short_repr_keeps_small_values_exact():
    assert short_repr("abc") == "'abc'"
    assert short_repr(5) == "5"
    assert short_repr(None) == "None"


def test_errors_pickle():
    for err in (
        MalformedMessage("bad"),
        MissingField("event"),
        InvalidField("event", "string", 3),
        UnsupportedFormat("nope", field="start.mediaFormat"),
    ):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)
        assert copy.field == err.field
