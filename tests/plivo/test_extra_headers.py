import pytest

from voicebridge.plivo import InvalidField, parse_extra_headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ("", {}),
        ("   ", {}),
        ("{}", {}),
        (" { } ", {}),
        ({}, {}),
        ("tenant=acme;lang=en", {"tenant": "acme", "lang": "en"}),
        ("tenant=acme,lang=en", {"tenant": "acme", "lang": "en"}),
        (" tenant = acme ; lang = en ;", {"tenant": "acme", "lang": "en"}),
        ("a=1;;b=2,,c=3", {"a": "1", "b": "2", "c": "3"}),
        ("a=1;novalue;b=2", {"a": "1", "b": "2"}),
        ("=orphan;a=1", {"a": "1"}),
        ("a=", {"a": ""}),
        ("a=b=c", {"a": "b=c"}),
        ("a=1;a=2", {"a": "2"}),
        ('{"tenant": "acme", "lang": "en"}', {"tenant": "acme", "lang": "en"}),
        (
            '{"n": 3, "f": 1.5, "t": true, "z": null, "l": [1, 2]}',
            {"n": "3", "f": "1.5", "t": "true", "z": "", "l": "[1,2]"},
        ),
        ({"tenant": "acme", "n": 3}, {"tenant": "acme", "n": "3"}),
        ("{tenant=acme}", {"tenant": "acme"}),
        ("{not json", {}),
        ("justtext", {}),
    ],
)
def test_forms(value, expected):
    assert parse_extra_headers(value) == expected


@pytest.mark.parametrize(
    "value", ["{", "}{", '{"a":', "[1,2]", "\x00\xff", "=;=,=", "{" * 10_000, "a=1" * 10_000]
)
def test_never_raises_on_a_string(value):
    result = parse_extra_headers(value)
    assert isinstance(result, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@pytest.mark.parametrize("value", [5, ["a=1"], True, 1.5])
def test_other_types_raise_invalid_field(value):
    with pytest.raises(InvalidField, match=r"^extra_headers: expected string or object"):
        parse_extra_headers(value)
