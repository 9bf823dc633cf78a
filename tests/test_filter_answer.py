"""Reading a FILTER hook's answer (engine/hooks.decode_filter): what is taken back, and the bytes the channel gets."""

from __future__ import annotations

import json

import orjson
import pytest

from pointcast.engine.hooks import FilterError, decode_filter

IDS = ["e1", "e2", "e3"]
E1 = {"ChannelType": "CUSTOM", "Address": "a1", "Attributes": {"CreditScore": ["700"]}}
E2 = {"ChannelType": "CUSTOM", "Address": "a2"}


def test_a_clean_answer_is_passed_on_as_it_came() -> None:
    answer = orjson.dumps({"e1": E1, "e2": E2})
    got = decode_filter(answer, IDS)
    assert got.kept == ["e1", "e2"] and got.dropped == ["e3"] and got.rejected == []
    assert got.endpoints_json() is answer  # nothing taken out: no second encoding


@pytest.mark.parametrize(
    "answer",
    [
        {"e2": E2, "e1": E1},  # another order: the channel still gets the batch's order
        {"e1": E1, "e2": {**E2, "Secret": "dropped"}},  # a member that is not an endpoint's
        {"e1": E1, "e2": E2, "zz": E2},  # an id not in the batch
        {"Endpoints": {"e1": E1, "e2": E2}, "ApplicationId": "x"},  # the whole event handed back
    ],
)
def test_anything_taken_out_or_reordered_is_encoded_again(answer: dict) -> None:
    got = decode_filter(orjson.dumps(answer), IDS)
    endpoints = got.endpoints_json()
    assert list(json.loads(endpoints)) == ["e1", "e2"]
    assert json.loads(endpoints) == {"e1": E1, "e2": E2}


@pytest.mark.parametrize("answer", [b"not json", b"[1, 2]", b'{"e1": "x"}'])
def test_answers_that_are_not_a_map_of_definitions_fail(answer: bytes) -> None:
    with pytest.raises(FilterError):
        decode_filter(answer, IDS)
