"""The Python worker's marshaller (orjson where the JSON value is the same as awslambdaric's) and the pipe framing."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import math
from typing import Any

import pytest
from awslambdaric.lambda_runtime_exception import FaultException
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from hypothesis import given, settings
from hypothesis import strategies as st

from pointcast.functions.runtime import ric
from pointcast.functions.runtime.pipe import FRAME, _Reader
from pointcast.functions.runtime.runtime_api import MAX_BODY, Delivery

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@pytest.fixture(params=["AWS_Lambda_python3.12", "AWS_Lambda_python3.11"])
def marshallers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(pointcast's, awslambdaric's) for a runtime; awslambdaric reads AWS_EXECUTION_ENV when it builds one."""
    monkeypatch.setenv("AWS_EXECUTION_ENV", request.param)
    return ric.FastMarshaller(), LambdaMarshaller()


def same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_any_json_value_decodes_and_encodes_as_awslambdaric_does(value: Any) -> None:
    fast, slow = ric.FastMarshaller(), LambdaMarshaller()
    text = json.dumps(value).encode()
    assert same_json(fast.unmarshal_request(text), slow.unmarshal_request(text))
    ours, ours_type = fast.marshal_response(value)
    theirs, theirs_type = slow.marshal_response(value)
    assert ours_type == theirs_type == "application/json"
    assert same_json(json.loads(ours), json.loads(theirs))


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 12345678901234567890123}',  # beyond 64 bits: orjson would make it a float
        b'{"n": -9223372036854775809}',
        b"[1,\n\t 18446744073709551616]",
        b"123456789012345678901234567890",
        b'{"token": "12345678901234567890123", "n": 5}',  # a long digit run in a string: orjson, the same value
        b'{"n": NaN, "i": Infinity}',  # refused by both (simplejson's allow_nan is off)
        b'{"s": "\\ud800"}',  # a lone surrogate
        b'{"f": 1e400}',
    ],
)
def test_events_orjson_would_change_go_to_awslambdaric(text: bytes) -> None:
    def outcome(marshaller: Any) -> str:
        try:
            return repr(marshaller.unmarshal_request(text))  # repr: 10**22 == float(10**22) would hide a change
        except FaultException as e:
            return f"{e.exception_type}: {e.msg}"

    assert outcome(ric.FastMarshaller()) == outcome(LambdaMarshaller())


def test_undecodable_event_is_awslambdaric_s_unmarshal_error() -> None:
    with pytest.raises(FaultException) as raised:
        ric.FastMarshaller().unmarshal_request(b'{"a": ')
    assert raised.value.exception_type == FaultException.UNMARSHAL_ERROR


def test_non_json_content_type_passes_through() -> None:
    assert ric.FastMarshaller().unmarshal_request(b"raw", "application/octet-stream") == b"raw"


class Color(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Thing:
    a: int


@pytest.mark.parametrize(
    "value",
    [
        {"price": decimal.Decimal("1.10")},
        {"nan": math.nan, "inf": math.inf},
        {"none": None},
        {1: "int key", "b": 2},
        {"big": 2**70},
        {"point": Point(1, 2)},
        b"raw bytes",
    ],
)
def test_answers_orjson_would_change_are_awslambdaric_s_bytes(value: Any, marshallers: tuple[Any, Any]) -> None:
    fast, slow = marshallers
    assert fast.marshal_response(value) == slow.marshal_response(value)


def test_non_ascii_answers(marshallers: tuple[Any, Any]) -> None:
    fast, slow = marshallers
    ours, theirs = fast.marshal_response(["é", "ü"]), slow.marshal_response(["é", "ü"])
    if fast.ascii_only:  # before python3.12 awslambdaric escapes non-ASCII text: the same bytes, from its encoder
        assert ours == theirs == ('["\\u00e9", "\\u00fc"]', "application/json")
    else:
        assert ours == ('["é","ü"]'.encode(), "application/json") and json.loads(theirs[0]) == ["é", "ü"]


def test_int_enum_answers_are_their_value() -> None:
    ours, _ = ric.FastMarshaller().marshal_response({"color": Color.RED})
    theirs, _ = LambdaMarshaller().marshal_response({"color": Color.RED})
    assert json.loads(ours) == json.loads(theirs) == {"color": 1}


@pytest.mark.parametrize("value", [{"when": datetime.datetime(2026, 1, 1)}, {"thing": Thing(1)}, {"s": {1, 2}}])
def test_answers_lambda_cannot_encode_fail_as_in_lambda(value: Any) -> None:
    for marshaller in (ric.FastMarshaller(), LambdaMarshaller()):
        with pytest.raises(FaultException) as raised:
            marshaller.marshal_response(value)
        assert raised.value.exception_type == FaultException.MARSHAL_ERROR


def test_compact_json_on_the_fast_path(marshallers: tuple[Any, Any]) -> None:
    fast, slow = marshallers
    assert fast.marshal_response({"a": [1, "x"]}) == (b'{"a":[1,"x"]}', "application/json")
    assert slow.marshal_response({"a": [1, "x"]}) == ('{"a": [1, "x"]}', "application/json")


# -- the pool's end of the pipe ----------------------------------------------------------------------------------


class FakeSession:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.killed = False

    def next_invocation(self, deliver: Any) -> None:
        self.calls.append(("next",))

    def cancel_next(self, deliver: Any) -> None:  # pragma: no cover - pipes have no connection to lose
        self.calls.append(("cancel",))

    def posted_response(self, request_id: str, body: bytes) -> bool:
        self.calls.append(("response", request_id, body))
        return True

    def posted_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        self.calls.append(("error", request_id, body))
        return True

    def posted_init_error(self, body: bytes, error_type: str | None) -> None:
        self.calls.append(("init", error_type, body))

    def response_too_large(self, request_id: str, size: int) -> bool:
        self.calls.append(("too large", request_id, size))
        return True

    def kill(self) -> None:
        self.killed = True


def frame(kind: bytes, head: bytes = b"", body: bytes = b"") -> bytes:
    return FRAME.pack(kind, len(head), len(body)) + head + body


def no_delivery(delivery: Delivery) -> None:  # pragma: no cover
    raise AssertionError("not called by the reader")


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_frames_in_any_chunking(chunk: int) -> None:
    session = FakeSession()
    reader = _Reader(session, no_delivery)
    data = (
        frame(b"R", b"req-1", b'{"ok":1}')
        + frame(b"N")
        + frame(b"X", b"req-2", b'{"errorType":"E"}')
        + frame(b"I", b"Runtime.ImportModuleError", b"{}")
    )
    for start in range(0, len(data), chunk):
        reader.data_received(data[start : start + chunk])
    assert session.calls == [
        ("response", "req-1", b'{"ok":1}'),
        ("next",),
        ("error", "req-2", b'{"errorType":"E"}'),
        ("init", "Runtime.ImportModuleError", b"{}"),
    ]
    assert not session.killed


@pytest.mark.parametrize("chunk", [5000, 1 << 20, MAX_BODY + 64])
def test_oversized_answer_is_reported_and_skipped(chunk: int) -> None:
    session = FakeSession()
    reader = _Reader(session, no_delivery)
    size = MAX_BODY + 1
    data = frame(b"R", b"req-1", b"x" * size) + frame(b"N")
    for start in range(0, len(data), chunk):
        reader.data_received(data[start : start + chunk])
    assert session.calls == [("too large", "req-1", size), ("next",)]
    assert len(reader._buffer) == 0


@pytest.mark.parametrize("data", [frame(b"Z", b"", b"junk"), frame(b"N", b"x"), FRAME.pack(b"R", 1 << 20, 0) + b"head"])
def test_garbage_on_the_pipe_kills_the_worker(data: bytes) -> None:
    session = FakeSession()
    _Reader(session, no_delivery).data_received(data)
    assert session.killed and session.calls == []
