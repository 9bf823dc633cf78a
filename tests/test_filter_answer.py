"""Reading a FILTER hook's answer (engine/hooks.decode_filter): what is taken back, and the bytes the channel gets."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointcast.engine.hooks import ENDPOINT_MEMBERS, FilterError, decode_filter

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


@pytest.mark.parametrize(
    "answer",
    [
        # an id twice: the first copy (another address, a member no endpoint has) must not reach the channel
        b'{"e1":{"Address":"evil","Secret":"x"},"e1":{"ChannelType":"CUSTOM","Address":"a1"},"e2":{"Address":"a2"}}',
        b'{"e1":{"Address":"evil","Address":"a1"},"e2":{"Address":"a2"}}',  # a member twice
        b'{"e1": {"Address": "a1"}, "e2": {"Address": "a2"}}',  # spaces: the same value, encoded again
        b'{"\\u0065\\u0031":{"Address":"a1"},"e2":{"Address":"a2"}}',  # an escaped name
    ],
)
def test_an_answer_that_is_not_its_value_written_plainly_is_encoded_again(answer: bytes) -> None:
    got = decode_filter(answer, ["e1", "e2"])
    endpoints = got.endpoints_json()
    assert endpoints != answer and b"evil" not in endpoints and b"Secret" not in endpoints
    assert endpoints.count(b'"e1"') == 1 and json.loads(endpoints)["e1"]["Address"] == "a1"


DEEP = b'{"e1": {"Attributes": {"A": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"  # JSON, nested past any decoder


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[1, 2]",
        b'{"e1": "x"}',
        DEEP,
        b'{"statusCode": 200, "body": "ok"}',  # a DELIVERY-style answer: not "filter the whole batch"
        b'{"ok": true}',
        b'{"Endpoints": "x", "statusCode": 200}',
    ],
)
def test_answers_that_are_not_a_map_of_definitions_fail(answer: bytes) -> None:
    with pytest.raises(FilterError):
        decode_filter(answer, IDS)


@pytest.mark.parametrize("answer", [b"{}", b'{"zz": {"Address": "a"}}', b'{"e1": {"Address": "a"}, "zz": 5}'])
def test_an_empty_map_or_ids_beside_valid_ones_are_still_answers(answer: bytes) -> None:
    got = decode_filter(answer, IDS)
    assert got.kept == (["e1"] if b"e1" in answer else [])


def _reference(payload: bytes, ids: list[str]) -> tuple[list[str], list[str], list[str], object] | str:
    """What the answer means, read with orjson into Python values (the definition decode_filter keeps, without its
    shortcuts): kept, dropped and rejected ids and the endpoints the channel gets, or "error"."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "error"
    if isinstance(value, dict) and isinstance(value.get("Endpoints"), dict) and "Endpoints" not in ids:
        value = value["Endpoints"]
    if not isinstance(value, dict):
        return "error"
    if value and not set(value) & set(ids) and not all(isinstance(v, dict) for v in value.values()):
        return "error"  # no id of the batch, and not all definitions: some other object, not "filter everyone"
    kept: dict[str, object] = {}
    rejected = []
    for endpoint_id, definition in value.items():
        if endpoint_id not in ids:
            rejected.append(endpoint_id)
        elif not isinstance(definition, dict):
            return "error"
        else:
            kept[endpoint_id] = {k: v for k, v in definition.items() if k in ENDPOINT_MEMBERS}
    order = [i for i in ids if i in kept]
    return order, [i for i in ids if i not in kept], rejected, {i: kept[i] for i in order}


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_definition = st.dictionaries(st.sampled_from([*sorted(ENDPOINT_MEMBERS)[:6], "Secret", "Id"]), _json, max_size=4)
_answer_map = st.dictionaries(st.sampled_from(["e1", "e2", "e3", "zz", "Endpoints"]), _definition | _json, max_size=5)
_whole_event = st.fixed_dictionaries({"Endpoints": _answer_map, "ApplicationId": st.text(max_size=3)})


@settings(max_examples=400, deadline=None)
@given(
    answer=_answer_map | _whole_event | _json,
    endpoints_is_an_id=st.booleans(),
)
def test_the_answer_means_what_reading_it_whole_means(answer: object, endpoints_is_an_id: bool) -> None:
    ids = ["e1", "e2", "e3", *(["Endpoints"] if endpoints_is_an_id else [])]
    payload = orjson.dumps(answer)
    expected = _reference(payload, ids)
    if expected == "error":
        with pytest.raises(FilterError):
            decode_filter(payload, ids)
        return
    got = decode_filter(payload, ids)
    kept, dropped, rejected, endpoints = expected
    assert (got.kept, got.dropped, got.rejected) == (kept, dropped, rejected)
    channel = got.endpoints_json()
    assert list(orjson.loads(channel)) == kept and orjson.loads(channel) == endpoints
