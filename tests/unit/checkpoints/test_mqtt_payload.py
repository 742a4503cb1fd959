"""Reading MQTT plate-read messages: payload shapes, the topic's checkpoint, reply
topics. No broker, no database."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from anwang.checkpoints import mqtt_intake as mi
from anwang.checkpoints.reads import MAX_BATCH, Malformed
from anwang.infra.mqtt import Message


def read(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"captured_at": "2026-11-28T15:59:00+08:00", "plate": "苏D12345",
                            "direction": "in"}
    base.update(changes)
    return base


def message(topic: str, payload: bytes = b"", response_topic: str | None = None) -> Message:
    return Message(topic, payload, 1, False, False, 1, 0.0, 1, response_topic, None)


# --- shapes ------------------------------------------------------------------------------


def test_a_single_object_is_one_read() -> None:
    p = mi.decode_payload(json.dumps(read(), ensure_ascii=False).encode())
    assert p.refused is None and p.items == [read()]


def test_an_array_is_its_reads() -> None:
    batch = [read(), read(plate="苏E54321"), 7]
    p = mi.decode_payload(json.dumps(batch, ensure_ascii=False, indent=2).encode())
    assert p.refused is None and p.items == batch


def test_ndjson_lines_stand_alone() -> None:
    lines = [json.dumps(read()), "", "  ", '{"plate": ', json.dumps(read(lane=2)), "\r"]
    p = mi.decode_payload("\n".join(lines).encode())
    assert p.refused is None
    assert [type(x).__name__ for x in p.items] == ["dict", "Malformed", "dict"]
    assert p.items[0] == read() and p.items[2] == read(lane=2)
    assert isinstance(p.items[1], Malformed) and "malformed JSON" in p.items[1].detail


def test_a_broken_single_object_is_one_malformed_read() -> None:
    p = mi.decode_payload(b'{"plate": "x",')
    assert p.refused is None and len(p.items) == 1 and isinstance(p.items[0], Malformed)


def test_a_broken_array_is_refused_as_a_whole() -> None:
    p = mi.decode_payload(b'[{"plate": "x"}, {"plate": ]')
    assert p.items == [] and p.refused is not None
    assert (p.refused.index, p.refused.code) == (0, "malformed_json")


def test_not_utf8_is_refused_and_a_bom_is_not() -> None:
    p = mi.decode_payload(b'\xff\xfe{"a": 1}')
    assert p.refused is not None and p.refused.code == "malformed_json"
    assert mi.decode_payload('\ufeff{"a": 1}'.encode()).items == [{"a": 1}]


def test_empty_is_no_reads_and_a_scalar_is_left_to_validation() -> None:
    assert mi.decode_payload(b"") == mi.Payload([])
    assert mi.decode_payload(b" \n\n ") == mi.Payload([])
    assert mi.decode_payload(b"42").items == [42]


def test_too_many_reads_are_refused() -> None:
    for raw in (b"[1, 2, 3]", b"1\n2\n3"):
        refused = mi.decode_payload(raw, limit=2).refused
        assert refused is not None and refused.code == "batch_too_large"
    assert mi.decode_payload(b"1\n2", limit=2).items == [1, 2]
    assert mi.decode_payload(json.dumps([{}] * MAX_BATCH).encode()).refused is None


# --- property: what was written is what is read ------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_objects = st.dictionaries(st.text(max_size=12), _values, max_size=6)


@given(st.lists(_objects, max_size=8), st.booleans())
def test_arrays_and_ndjson_decode_to_what_was_encoded(objs: list[dict[str, Any]],
                                                      ascii_only: bool) -> None:
    as_array = json.dumps(objs, ensure_ascii=ascii_only).encode()
    assert mi.decode_payload(as_array) == mi.Payload(objs)
    as_ndjson = "\n".join(json.dumps(o, ensure_ascii=ascii_only) for o in objs).encode()
    assert mi.decode_payload(as_ndjson) == mi.Payload(objs)


@given(_objects)
def test_one_object_decodes_to_one_read(obj: dict[str, Any]) -> None:
    assert mi.decode_payload(json.dumps(obj, ensure_ascii=False).encode()) == mi.Payload([obj])


@given(st.binary(max_size=300))
def test_any_bytes_decode_without_raising(raw: bytes) -> None:
    p = mi.decode_payload(raw, limit=5)
    assert len(p.items) <= 5
    assert (p.refused is None) or (p.items == [] and p.refused.index == 0)


# --- the topic's checkpoint --------------------------------------------------------------


def test_the_topic_names_the_checkpoint() -> None:
    assert mi.checkpoint_of("anwang/checkpoints/G312-01/reads") == "G312-01"
    assert mi.checkpoint_of("anwang/checkpoints/G312-01/reads/result") is None
    assert mi.checkpoint_of("anwang/checkpoints/a/b/reads") is None
    assert mi.checkpoint_of("anwang/devices/x/reads") is None
    assert mi.checkpoint_of("t1/cp/X/reads", "t1/cp") == "X"
    assert mi.topic_filter() == "anwang/checkpoints/+/reads"
    assert mi.result_topic("X") == "anwang/checkpoints/X/reads/result"


def test_reads_take_the_topics_checkpoint_and_may_not_name_another() -> None:
    items = [read(), read(checkpoint="C1"), read(checkpoint="C2"), "x", read(checkpoint=None)]
    keep, where, refused = mi.bind_to_checkpoint(items, "C1")
    assert keep == [read(checkpoint="C1"), read(checkpoint="C1"), "x", read(checkpoint="C1")]
    assert where == [0, 1, 3, 4]
    assert [(r.index, r.code) for r in refused] == [(2, "checkpoint_topic_mismatch")]
    assert "C2" in refused[0].detail
    assert items[0] == read()  # the caller's object is not changed


def test_replies_go_to_the_response_topic_unless_it_is_unsafe() -> None:
    topic = "anwang/checkpoints/C1/reads"
    assert mi.reply_topic(message(topic), "C1") == "anwang/checkpoints/C1/reads/result"
    assert mi.reply_topic(message(topic, response_topic="cam/7/answers"), "C1") == "cam/7/answers"
    for unsafe in ("cam/+/x", "cam/#", "$SYS/x", "anwang/checkpoints/C2/reads", ""):
        got = mi.reply_topic(message(topic, response_topic=unsafe), "C1")
        assert got == "anwang/checkpoints/C1/reads/result", unsafe


def test_a_dead_message_is_reported_as_not_taken() -> None:
    found = mi.dead_reply(message("anwang/checkpoints/C1/reads"), RuntimeError("boom"))
    assert found is not None
    topic, payload, correlation = found
    body = json.loads(payload)
    assert topic == "anwang/checkpoints/C1/reads/result" and correlation is None
    assert (body["accepted"], body["duplicates"], body["alerts"]) == (0, 0, 0)
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(0, "handler_error")]
    assert mi.dead_reply(message("elsewhere"), RuntimeError()) is None
