"""Call variables: signed, bounded, and filled into templates without touching other braces."""

from __future__ import annotations

import pytest

from voicebridge.telephony.call_vars import (
    MAX_VARS,
    SIG_PARAM,
    VARS_PARAM,
    InvalidVars,
    parse_var_args,
    sign_vars,
    verify_vars,
)
from voicebridge.text import fill_vars


def test_signed_vars_round_trip_and_unicode_survives():
    query = sign_vars({"name": "Zoë", "n": 3}, "k")
    assert verify_vars(query, "k") == {"name": "Zoë", "n": "3"}


def test_no_vars_is_no_query_and_nothing_to_check():
    assert sign_vars({}, "k") == {}
    assert verify_vars({}, None) == {}


@pytest.mark.parametrize(
    "change",
    [
        lambda q: {**q, SIG_PARAM: "0" * 64},
        lambda q: {VARS_PARAM: q[VARS_PARAM]},
        lambda q: {**q, VARS_PARAM: sign_vars({"name": "Mallory"}, "k")[VARS_PARAM]},
    ],
)
def test_tampered_or_unsigned_vars_are_refused(change):
    query = sign_vars({"name": "Ana"}, "k")
    with pytest.raises(InvalidVars):
        verify_vars(change(query), "k")


def test_another_secret_or_none_refuses():
    query = sign_vars({"name": "Ana"}, "k")
    with pytest.raises(InvalidVars):
        verify_vars(query, "other")
    with pytest.raises(InvalidVars):
        verify_vars(query, None)


def test_bounds():
    with pytest.raises(InvalidVars, match="at most"):
        sign_vars({f"v{i}": "x" for i in range(MAX_VARS + 1)}, "k")
    with pytest.raises(InvalidVars, match="200 characters"):
        sign_vars({"v": "x" * 201}, "k")
    with pytest.raises(InvalidVars, match="variable name"):
        sign_vars({"a-b": "x"}, "k")
    with pytest.raises(InvalidVars, match="braces"):
        sign_vars({"v": "{x}"}, "k")
    with pytest.raises(InvalidVars, match="secret"):
        sign_vars({"v": "x"}, "")


def test_var_args():
    assert parse_var_args(["name=Ana Lopez", "time=3=pm"]) == {"name": "Ana Lopez", "time": "3=pm"}
    with pytest.raises(InvalidVars, match="key=value"):
        parse_var_args(["name"])


def test_fill_vars_fills_known_names_only():
    template = 'Hi {name}! Reply as JSON {"ok": true} about {unknown}.'
    filled = fill_vars(template, {"name": "Ana"})
    assert filled == 'Hi Ana! Reply as JSON {"ok": true} about {unknown}.'
    assert fill_vars(template, {}) == template
