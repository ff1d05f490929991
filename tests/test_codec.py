"""JSON in and out: what decode_json refuses, and that encode_json never breaks a listing."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_api.codec import UnpairedSurrogate, decode_json, encode_json


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b'{"name": "\\ud800"}', UnpairedSurrogate),
     (b'{"name": "a\\uDFFFb"}', UnpairedSurrogate),
     (b'{"args": [["\\udbff"]]}', UnpairedSurrogate),
     (b'{"kwargs": {"\\ud800": 1}}', UnpairedSurrogate),
     (b'{"name": "\\ude00\\ud83d"}', UnpairedSurrogate),
     ('{"name": "\\ud800"}'.encode("utf-16"), UnpairedSurrogate),
     (b'{"name": "\xed\xa0\x80"}', ValueError),
     (b'{"args": [NaN]}', ValueError),
     (b'{"args": [-Infinity]}', ValueError),
     (b'{"args": [1e400]}', ValueError),
     (b'{"name": "x"', ValueError),
     (b"\xff\xfe\x00", ValueError)],
    ids=["lone-high-escape", "lone-low-escape-upper-case", "nested-in-lists", "object-key",
         "pair-in-the-wrong-order", "utf-16-body", "utf-8-encoded-surrogate", "nan",
         "negative-infinity", "beyond-a-float", "truncated", "not-any-utf"],
)
def test_decode_refuses_what_is_not_json_text(raw, error):
    with pytest.raises(error):
        decode_json(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b'{"name": "\\ud83d\\ude00"}', {"name": "\U0001F600"}),
     (b'{"name": "\\\\ud800"}', {"name": "\\ud800"}),
     ('{"name": "Zürich"}'.encode("utf-16-le"), {"name": "Zürich"}),
     (b'{"n": 1.5e308, "m": -2.5e-300}', {"n": 1.5e308, "m": -2.5e-300})],
    ids=["escaped-pair", "escaped-backslash-then-text", "utf-16-le", "large-and-small-floats"],
)
def test_decode_accepts_json_text(raw, expected):
    assert decode_json(raw) == expected


def test_encode_writes_unpaired_surrogates_as_escapes():
    encoded = encode_json({"name": "a\ud800", "city": "Zürich", "args": ["\udfff"]})
    assert encoded == b'{"name":"a\\ud800","city":"Z\\u00fcrich","args":["\\udfff"]}'
    assert json.loads(encoded) == {"name": "a\ud800", "city": "Zürich", "args": ["\udfff"]}


def test_encode_is_compact_utf8_and_encodes_what_json_cannot():
    assert encode_json({"city": "Zürich", "tags": {"a"}, "at": (1, 2)}) == (
        '{"city":"Zürich","tags":["a"],"at":[1,2]}'.encode())


def _cycle() -> list[object]:
    cycle: list[object] = [1]
    cycle.append(cycle)
    return cycle


def _deep(depth: int) -> list[object]:
    nested: list[object] = []
    for _ in range(depth):
        nested = [nested]
    return nested


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("args", "shown"),
    [([float("nan"), 1], "[nan, 1]"), ([float("-inf")], "[-inf]"), (_cycle(), "[1, [...]]"),
     (_deep(100_000), "<list>"), ([{(1, 2): "x"}], "[{(1, 2): 'x'}]"),
     ([10**5000], "<list>"), ([BrokenRepr()], ["<BrokenRepr>"])],
    ids=["nan", "negative-infinity", "cycle", "nested-beyond-the-stack", "key-not-a-string",
         "int-past-the-digit-limit", "object-whose-repr-raises"],
)
def test_encode_writes_what_json_cannot_spell_as_its_repr(args, shown):
    encoded = encode_json({"id": "job", "args": args, "kwargs": {}})
    assert json.loads(encoded, parse_constant=pytest.fail) == {
        "id": "job", "args": shown, "kwargs": {}}


TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)


def _holds_surrogate_or_non_finite(value: object) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_holds_surrogate_or_non_finite, [*value, *value.values()]))
    if isinstance(value, list):
        return any(map(_holds_surrogate_or_non_finite, value))
    return False


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_encode_always_writes_strict_json_and_decode_never_returns_what_it_could_not(value):
    encoded = encode_json({"args": value})
    strictly = json.loads(encoded.decode("utf-8"), parse_constant=pytest.fail)
    if not _holds_surrogate_or_non_finite(value):
        assert strictly == {"args": value}
        assert decode_json(encoded) == {"args": value}
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        try:
            decoded = decode_json(text.encode("utf-8", "surrogatepass"))
        except ValueError:  # UnpairedSurrogate is one
            assert _holds_surrogate_or_non_finite(value)
        else:
            assert not _holds_surrogate_or_non_finite(decoded)
