"""The consumer's paho client (:class:`anwang.infra.mqtt._BufferedClient`) against paho's
own: the same bytes on the wire — PUBLISH packets written by paho, cut anywhere — give
the same messages, and bulk acknowledgements are the bytes paho's ``ack`` writes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from anwang.infra import mqtt as infra_mqtt
from anwang.infra.mqtt import _CLIENT, _BufferedClient

pytestmark = pytest.mark.skipif(
    _CLIENT is not _BufferedClient, reason="this paho has not the methods the client overrides"
)

PROTOCOLS = (mqtt.MQTTv311, mqtt.MQTTv5)

#: (topic, payload, qos, retain, dup, mid, response topic, correlation data)
Sent = tuple[str, bytes, int, bool, bool, int, str | None, bytes | None]

topics = st.text(st.sampled_from("ab/设备-_0"), min_size=1, max_size=40)
messages = st.lists(
    st.tuples(
        topics,
        st.binary(max_size=300),
        st.sampled_from((0, 1)),
        st.booleans(),
        st.booleans(),
        st.integers(1, 65535),
        st.none() | topics,
        st.none() | st.binary(min_size=1, max_size=20),
    ),
    min_size=1,
    max_size=30,
)


@contextmanager
def wired(client: mqtt.Client) -> Iterator[socket.socket]:
    """``client`` reading from (and writing to) one end of a socket pair; yields the
    other end."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    client._sock = ours  # type: ignore[assignment]
    try:
        yield theirs
    finally:
        client._sock = None
        ours.close()
        theirs.close()


def wire(protocol: int, sent: list[Sent]) -> bytes:
    """The PUBLISH packets paho writes for ``sent``."""
    writer = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    with wired(writer) as far:
        for topic, payload, qos, retain, dup, mid, response, correlation in sent:
            props = None
            if protocol == mqtt.MQTTv5 and (response or correlation):
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                if response:
                    props.ResponseTopic = response
                if correlation:
                    props.CorrelationData = correlation
            writer._send_publish(
                mid if qos else 0,
                topic.encode(),
                payload,
                qos,
                retain,
                dup,
                info=mqtt.MQTTMessageInfo(mid),
                properties=props,
            )
        return drain(far)


def drain(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def received(
    client: mqtt.Client, data: bytes, cuts: list[int], *, reads: int = 1
) -> list[tuple[Any, ...]]:
    """What ``client`` delivers for ``data`` arriving in pieces cut at ``cuts``, with
    ``reads`` calls of ``loop_read`` after each piece (paho's own reads one packet per
    call; the consumer's must take all there is at once)."""
    got: list[tuple[Any, ...]] = []

    def raw(
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        mid: int,
        props: Properties | None,
    ) -> None:
        got.append(
            (
                topic,
                payload,
                qos,
                retain,
                dup,
                mid,
                getattr(props, "ResponseTopic", None),
                getattr(props, "CorrelationData", None),
            )
        )

    def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        raw(m.topic, bytes(m.payload), m.qos, m.retain, bool(m.dup), m.mid, m.properties)

    if isinstance(client, _BufferedClient):
        client.on_publish_raw = raw
    else:
        client.on_message = on_message
    with wired(client) as far:
        bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if a < b:
                far.sendall(data[a:b])
            for _ in range(reads):
                assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        assert drain(far) == b"", "nothing is acknowledged before the handler says so"
    return got


@settings(max_examples=150, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    sent=messages,
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_delivers_what_paho_delivers_however_the_bytes_arrive(
    protocol: int, sent: list[Sent], cuts: list[int]
) -> None:
    data = wire(protocol, sent)
    ours = received(
        _BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True), data, cuts
    )
    paho = received(
        mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True),
        data,
        [],
        reads=len(sent) + 1,
    )
    assert ours == paho
    assert len(ours) == len(sent)
    assert [(t, p, q) for t, p, q, *_ in ours] == [(t, p, q) for t, p, q, *_ in sent]


def test_a_message_with_properties_keeps_them() -> None:
    """MQTT 5 request/response properties take paho's own decoding."""
    sent: list[Sent] = [
        ("anwang/x/1", b"{}", 1, False, False, 7, "reply/here", b"\x01\x02"),
        ("anwang/x/2", b"", 1, False, True, 8, None, None),
    ]
    got = received(
        _BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True),
        wire(mqtt.MQTTv5, sent),
        [3, 20],
    )
    assert got == sent


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bulk_acknowledgements_are_the_bytes_of_pahos_ack(protocol: int) -> None:
    mids = [1, 2, 300, 65535, 42]
    one_by_one = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    with wired(one_by_one) as far:
        for mid in mids:
            one_by_one.ack(mid, 1)
        expected = drain(far)
    bulk = _BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    with wired(bulk) as far:
        bulk.ack_many(mids)
        assert bulk.loop_write() == mqtt.MQTT_ERR_SUCCESS
        assert drain(far) == expected == b"".join(bytes([0x40, 2, m >> 8, m & 255]) for m in mids)


def test_without_manual_acknowledgement_a_qos1_message_is_acknowledged_at_once() -> None:
    client = _BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish_raw = lambda *a: None
    data = wire(mqtt.MQTTv5, [("t/1", b"x", 1, False, False, 9, None, None)])
    with wired(client) as far:
        far.sendall(data)
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        client.loop_write()
        assert drain(far) == bytes([0x40, 2, 0, 9])


def test_the_consumer_uses_the_lighter_delivery() -> None:
    assert infra_mqtt._CLIENT is _BufferedClient


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_large_payloads_and_long_lengths_arrive_whole(protocol: int) -> None:
    """Remaining lengths of one, two and three bytes give what paho gives, cut anywhere
    (within what one socket pair holds at once)."""
    sizes = [0, 1, 120, 121, 16_370, 16_400, 70_000, 5]
    sent: list[Sent] = [(f"big/{n}", bytes([n % 251]) * n, 1, False, False, k + 1, None, None)
                        for k, n in enumerate(sizes)]
    data = wire(protocol, sent)
    paho = received(mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol,
                                manual_ack=True), data, [], reads=len(sent) + 1)
    for cuts in ([], [3, 130, 16_600, 40_000, 90_000], [len(data) - 2]):
        ours = received(_BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol,
                                        manual_ack=True), data, cuts)
        assert ours == paho
    assert [(t, p) for t, p, *_ in paho] == [(t, p) for t, p, *_ in sent]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_buffered_plain_packets_skip_pahos_reader(
    protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of 50 plain PUBLISH packets arriving together, paho's per-packet reader decodes
    only the first (which brought the bytes in); the rest are delivered from the
    buffer. A packet with properties in between goes through paho again."""
    calls = {"n": 0}
    original = _BufferedClient._handle_publish

    def counted(self: _BufferedClient) -> Any:
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(_BufferedClient, "_handle_publish", counted)
    sent: list[Sent] = [(f"t/{i}", b"x" * i, i % 2, False, False, i + 1, None, None)
                        for i in range(50)]
    if protocol == mqtt.MQTTv5:
        sent[25] = ("t/props", b"p", 1, False, False, 99, "reply/to", None)
    got = received(_BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol,
                                   manual_ack=True), wire(protocol, sent), [])
    assert got == [(t, p, q, r, d, m if q else 0, resp, corr)
                   for t, p, q, r, d, m, resp, corr in sent]
    assert calls["n"] == (2 if protocol == mqtt.MQTTv5 else 1)
