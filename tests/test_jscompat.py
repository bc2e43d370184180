"""JavaScript value semantics, checked against values Node prints (verified with node -p)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mproxy_scapy import jscompat


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (-0.0, "0"), (1.0, "1"), (0.5, "0.5"), (1e21, "1e+21"), (1e16, "10000000000000000"),
    (1e-7, "1e-7"), (0.000001, "0.000001"), (123456789.125, "123456789.125"), (-2.5e-9, "-2.5e-9"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (10**21, "1e+21"), (1.5e300, "1.5e+300"),
])
def test_number_to_string(value, text):
    assert jscompat.number_to_string(value) == text


def test_json_stringify():
    assert jscompat.json_stringify([1, 2.0, None, True, "a\u2028\x01", {"k": [float("nan")]}]) == (
        '[1,2,null,true,"a\u2028\\u0001",{"k":[null]}]'
    )
    assert jscompat.json_stringify(b"\x00\xff") == '{"type":"Buffer","data":[0,255]}'
    assert jscompat.json_stringify("\ud800") == '"\\ud800"'
    assert jscompat.json_stringify("\ud83d\ude00") == '"\U0001f600"'


@pytest.mark.parametrize(("text", "number"), [
    ("12", 12), (" 12abc", 12), ("-5", -5), ("+7", 7), ("", None), ("abc", None), ("0x10", 0), ("1e3", 1),
])
def test_parse_int(text, number):
    assert jscompat.parse_int(text) == number


def test_truthiness_and_join():
    assert [jscompat.is_truthy(v) for v in (None, 0, 0.0, math.nan, "", [], {}, b"", "0")] == [
        False, False, False, False, False, True, True, True, True,
    ]
    assert jscompat.to_string(None) == "" and jscompat.concat_string(None) == "null"
    assert jscompat.to_string(443.0) == "443" and jscompat.to_string(True) == "true"


def test_encode_utf8_replaces_lone_surrogates_like_buffer_from():
    assert jscompat.encode_utf8("a\udc80b") == b"a\xef\xbf\xbdb"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_text_round_trips(value):
    assert float(jscompat.number_to_string(value)) == value
