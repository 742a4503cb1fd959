"""Durable MQTT consumers (MQTT 3.1.1 and 5, any broker; tested on Mosquitto 2).

What a consumer promises, and how:

No message lost
    It subscribes with QoS 1 and acknowledges a message (PUBACK) only after its batch
    handler has returned — the domain's transaction committed — using paho's manual
    acknowledgements. A process that dies before that leaves the message unacknowledged,
    and the broker delivers it again.
Nothing missed while down
    The session is persistent: a stable client id (``anwang-<group>-<worker id>``),
    ``clean_session=False`` (3.1.1) or ``clean_start=False`` with a session expiry
    (5), so the broker queues what arrives for the subscription while the worker is
    away and delivers it when it reconnects. (The broker bounds that queue: Mosquitto's
    ``max_queued_messages`` — see docs/devices.md.)
Several workers share the work
    With ``?shared=1`` in the URL, the workers of one group subscribe to
    ``$share/<group>/<filter>`` (MQTT 5 and, on Mosquitto, 3.1.1), so each message goes to
    one of them; under MQTT 5 a broker that says in CONNACK that it has no shared
    subscriptions gets plain ones. Each worker needs its own worker id (two processes
    with one client id would take the session from each other in turn; that is logged
    as an error). Plain subscriptions are the default because Mosquitto 2.0 does not
    restore *shared* subscriptions from its persistence file: after a broker restart,
    messages published before the workers have subscribed again would be lost (plain
    subscriptions come back with the session). Several workers with plain
    subscriptions each receive every message — correct, since the handlers are
    idempotent, but the work is done once per worker.
Batches
    paho's network thread puts messages into a buffer; the consumer's task on the event
    loop takes whatever has arrived (up to ``max_batch``) and awaits the handler with
    it, so batches grow by themselves under load and stay single messages when quiet.
    The broker never has more than ``receive_maximum`` (MQTT 5) messages unacknowledged
    in flight to the worker, which bounds the buffer. With ``concurrency`` above 1 the
    next batch is taken while earlier ones are still in their handlers (each batch
    acknowledged when its own handler returns); keeping the handlers' effects in order
    is then the handler's business.
Lanes
    A subscription with ``lanes`` and ``lane_of`` (topic → lane) keeps one buffer per
    lane: each message goes to the lane of its topic, a batch is taken from one lane
    only, and each lane runs up to ``concurrency`` batches of its own — so messages of
    one key (a device, when ``lane_of`` reads it from the topic) stay in one lane, in
    order, while batches of other keys are handled beside them.
Failures
    A handler error that looks transient (the database unreachable) retries the same
    batch with back-off, for as long as it takes: nothing is acknowledged meanwhile,
    and the broker stops sending at the in-flight limit. Any other error retries a
    few times, then splits the batch in halves to find the message that fails; a single
    message that still fails is handed to ``on_dead`` (which records it) and
    acknowledged, so that one poison message cannot stall the consumer.
Reconnects
    paho reconnects on its own with back-off (1 s up to 30 s); messages received on a
    previous connection are not acknowledged on the new one (their packet ids no longer
    mean the same) — the broker redelivers them, and handlers are idempotent.

What paho costs per message, and :class:`_BufferedClient`
    paho reads a socket a few bytes at a time (one ``recv`` for a packet's type, one per
    length byte, one for the rest): the client serves those reads from one large
    ``recv``. For each PUBLISH paho makes an ``MQTTMessage`` (with a condition variable),
    matches it against per-topic callbacks and — under MQTT 5 — builds a ``Properties``
    object even when the packet has none, which together cost more than the rest of
    receiving. The client delivers the plain PUBLISH packets (QoS 0 or 1, and under
    MQTT 5 a property length of the single byte 0) that lie complete in its buffer
    itself, one after the other in one loop, without paho's per-packet reader; any
    other packet, or one not yet complete, is read by paho, and a PUBLISH among them is
    handed over straight from paho's own decoding (``_packet.decode_publish``). And the
    acknowledgements of a batch go out as one write of paho's PUBACK packets, not one
    queued packet (and a wake-up of paho's thread) each. With these, receiving and
    acknowledging a message costs about a tenth of what paho's own path does (4 µs of
    CPU against about 40, docs/performance.md). The
    client overrides private methods of paho 2.x and falls back to paho's own client
    when they are absent; ``tests/unit/infra`` checks it delivers what paho delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import (
    CallbackAPIVersion,
    MessageType,
    MQTTErrorCode,
    MQTTProtocolVersion,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

#: Bytes read from the socket at once by :class:`_BufferedClient`.
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class MqttUrl:
    """``mqtt://user:password@host:1883`` or ``mqtts://...:8883`` (TLS), with options in
    the query: ``protocol=5`` (default) or ``3.1.1``, ``shared=1`` (shared subscriptions;
    default off, see the module docstring), ``ca=/path/ca.pem``, ``cert=`` and ``key=``
    (client certificate), ``insecure=1`` (skip the server certificate check; testing
    only), ``keepalive=60``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: MQTTProtocolVersion = mqtt.MQTTv5
    shared: bool | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    keepalive: int = 60

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("an MQTT URL starts with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("the MQTT URL has no host")
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        proto = q.get("protocol", "5")
        if proto not in ("5", "3.1.1", "4"):
            raise ValueError("protocol must be 5 or 3.1.1")
        shared = q.get("shared")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            protocol=mqtt.MQTTv5 if proto == "5" else mqtt.MQTTv311,
            shared=None if shared is None else shared in ("1", "true", "yes"),
            ca_file=q.get("ca"),
            cert_file=q.get("cert"),
            key_file=q.get("key"),
            insecure=q.get("insecure") in ("1", "true", "yes"),
            keepalive=int(q.get("keepalive", "60")),
        )

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    @property
    def v5(self) -> bool:
        return self.protocol == mqtt.MQTTv5

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of an ``mqtts://`` URL: the broker verified against ``ca``
        (the system's trust store without it), the client certificate presented when
        ``cert``/``key`` are given; ``insecure`` skips verification (testing only)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message. ``received_at`` is epoch seconds on anwang's clock;
    ``generation`` counts the connection it came on; ``response_topic`` and
    ``correlation_data`` are the publisher's MQTT 5 request/response properties (None
    under 3.1.1 or when not set)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    received_at: float
    generation: int
    response_topic: str | None = None
    correlation_data: bytes | None = None


BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
DeadHandler = Callable[[Message, BaseException], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """A consumer group: ``name`` makes the shared-subscription group and the client
    id; ``topics`` are MQTT filters (``anwang/devices/+/+``)."""

    name: str
    topics: tuple[str, ...]
    handler: BatchHandler
    on_dead: DeadHandler | None = None
    max_batch: int = 2000
    #: Attempts of a batch that fails for a reason that is not transient, before it is
    #: split; and of a single message, before it is given up.
    max_attempts: int = 3
    #: Batches handled at once (the handler is called again while earlier calls are
    #: still running; each batch is acknowledged when its own call returns). 1: one
    #: after the other. With ``lanes``, per lane.
    concurrency: int = 1
    #: Lanes of one worker: ``lane_of(topic)`` (an int in ``range(lanes)``) puts each
    #: message in one, a batch holds messages of one lane only, and the lanes' batches
    #: are handled side by side — a domain whose work is keyed (the device of a topic)
    #: lets batches of different keys run at once without waiting for each other.
    lanes: int = 1
    lane_of: Callable[[str], int] | None = None


def _transient(exc: BaseException) -> bool:
    """Whether retrying the same batch later can succeed (the database or the network is
    away), as opposed to a message that makes the handler fail."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from anwang.core.errors import Unavailable

    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | Unavailable
                  | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated is True


@dataclass
class Stats:
    received: int = 0
    handled: int = 0
    batches: int = 0
    acked: int = 0
    #: Batches retried after an error.
    retries: int = 0
    dead: int = 0
    connects: int = 0
    disconnects: int = 0
    #: Acknowledgements skipped because the connection changed (redelivered instead).
    stale_acks: int = 0
    last_error: str | None = None
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=100))


#: ``(topic, payload, qos, retain, dup, mid, properties)`` of one received PUBLISH.
RawPublishHandler = Callable[[str, bytes, int, bool, bool, int, Properties | None], None]

_PUBACK = struct.Struct("!BBH")
_PUBACK_TYPE = int(MessageType.PUBACK)


class _BufferedClient(mqtt.Client):
    """paho's client, made cheaper per message where a consumer spends its time (see the
    module docstring): reading the socket in large chunks, a lighter delivery of
    PUBLISH packets, and acknowledgements sent in bulk."""

    _rbuf: bytes = b""
    _rpos: int = 0
    _rsock: object = None
    #: When set, QoS 0 and 1 messages go to it (on paho's thread) instead of
    #: ``on_message``: without the ``MQTTMessage`` (and its condition variable), the
    #: topic-filter callbacks and the debug log paho makes for each message.
    on_publish_raw: RawPublishHandler | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: drop the old one's bytes
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(READ_CHUNK)
            if not buf:
                return b""
            self._rbuf, pos = buf, 0
        out = buf[pos:pos + bufsize]
        self._rpos = pos + len(out)
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per select() when nothing is outgoing; with the bytes
        # already buffered, read every complete packet there is.
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        for _ in range(100_000):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if (self.on_publish_raw is not None and self._in_packet["command"] == 0
                    and self._rsock is self._sock and self._rpos < len(self._rbuf)):
                self._deliver_buffered()
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _deliver_buffered(self) -> None:
        """Deliver the plain PUBLISH packets (QoS 0 or 1; under MQTT 5 without
        properties) complete in the buffer, from its front, without paho's per-packet
        state; stop at the first other or incomplete packet, which paho then reads. The
        messages are what :meth:`_handle_publish` delivers for the same bytes."""
        sink = self.on_publish_raw
        assert sink is not None
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        v5 = self._protocol == mqtt.MQTTv5
        manual = self._manual_ack
        delivered = False
        while pos < end:
            header = buf[pos]
            qos = (header & 0x06) >> 1
            if header & 0xF0 != 0x30 or qos > 1:
                break
            # The remaining length: 1 to 4 bytes, 7 bits each, least significant first.
            i, length, shift = pos + 1, 0, 0
            while True:
                if i >= end or shift > 21:
                    break
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    shift = -1
                    break
            if shift != -1 or i + length > end or length < 2:
                break  # incomplete (or malformed: paho says so)
            body_end = i + length
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            at = topic_end + (2 if qos else 0)
            if topic_end == i + 2 or at > body_end or (v5 and (at >= body_end or buf[at])):
                break  # an empty topic, too short, or MQTT 5 properties: paho's way
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            topic = buf[i + 2:topic_end].decode("utf-8", "replace")
            payload = buf[at + 1 if v5 else at:body_end]
            pos = self._rpos = body_end
            delivered = True
            sink(topic, payload, qos, bool(header & 0x01), bool(header & 0x08), mid, None)
            if qos and not manual:
                self._send_puback(mid)
        if delivered:
            with self._msgtime_mutex:
                self._last_bytes_received = _time_func()

    def _handle_publish(self) -> MQTTErrorCode:
        sink = self.on_publish_raw
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if sink is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        v5 = self._protocol == mqtt.MQTTv5
        if v5 and len(packet) > 2:
            # Most PUBLISH packets carry no MQTT 5 properties: their property length is
            # the single byte 0 after the topic and packet id. Such a packet is decoded
            # as a 3.1.1 one, whose payload then starts with that byte — which spares
            # paho's Properties object, the dearest part of decoding a message.
            topic_len = (packet[0] << 8) | packet[1]
            at = 2 + topic_len + (2 if qos else 0)
            if topic_len and at < len(packet) and packet[at] == 0:
                plain = _packet.decode_publish(header, packet, mqtt.MQTTv311)
                payload = bytes(plain.payload[1:])
                sink(plain.topic.decode("utf-8", "replace"), payload, qos, plain.retain,
                     plain.dup, plain.mid, None)
                return self._puback_unless_manual(qos, plain.mid)
        result = _packet.decode_publish(header, packet, self._protocol)
        sink(result.topic.decode("utf-8", "replace"), bytes(result.payload), qos,
             result.retain, result.dup, result.mid, result.properties)
        return self._puback_unless_manual(qos, result.mid)

    def _puback_unless_manual(self, qos: int, mid: int) -> MQTTErrorCode:
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge the QoS 1 messages ``mids`` (manual acknowledgements): the same
        PUBACK packets as :meth:`ack` sends one by one, queued as one write."""
        if mids and self._manual_ack:
            pack = _PUBACK.pack
            self._packet_queue(_PUBACK_TYPE,
                               b"".join([pack(_PUBACK_TYPE, 2, mid) for mid in mids]), 0, 0)


_time_func: Callable[[], float] = getattr(mqtt, "time_func", time.monotonic)

_CLIENT: type[mqtt.Client] = (
    _BufferedClient
    if all(hasattr(mqtt.Client, a) for a in ("_sock_recv", "_packet_read", "_loop_rc_handle",
                                              "_handle_publish", "_packet_queue",
                                              "_send_puback"))
    and hasattr(_packet, "decode_publish")
    else mqtt.Client
)


def _reason_code(rc: Any) -> int:
    value = getattr(rc, "value", rc)
    return int(value) if isinstance(value, int) else -1


class MqttConsumer:
    """One worker's membership of a consumer group (see the module docstring).

    ``start()`` on the event loop that should run the handler; ``stop()`` disconnects
    (the broker keeps the session, so what arrives meanwhile waits for the next start).
    """

    def __init__(
        self,
        url: str | MqttUrl,
        subscription: Subscription,
        *,
        worker_id: str,
        session_expiry_s: int = 24 * 3600,
        receive_maximum: int = 10_000,
        reconnect_max_s: int = 30,
        retry_base_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self.url = url if isinstance(url, MqttUrl) else MqttUrl.parse(url)
        self.sub = subscription
        self.client_id = f"anwang-{subscription.name}-{worker_id}"[:128]
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = max(1, min(receive_maximum, 65535))
        self.reconnect_max_s = reconnect_max_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.stats = Stats()
        n_lanes = max(1, subscription.lanes) if subscription.lane_of is not None else 1
        self._lane_of = subscription.lane_of if n_lanes > 1 else None
        self._bufs: list[deque[Message]] = [deque() for _ in range(n_lanes)]
        self._buf: deque[Message] = self._bufs[0]
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._shared = False
        self._pending_subs: dict[int, bool] = {}

    # --- lifecycle ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def shared(self) -> bool:
        """Whether this worker's subscriptions are shared ones."""
        return self._shared

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        u = self.url
        client = _CLIENT(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=u.protocol,
            clean_session=None if u.v5 else False,
            manual_ack=True,
        )
        if u.username is not None:
            client.username_pw_set(u.username, u.password)
        if u.tls:
            client.tls_set_context(u.tls_context())
        client.reconnect_delay_set(1, self.reconnect_max_s)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        if isinstance(client, _BufferedClient):
            client.on_publish_raw = self._on_publish
        else:
            client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        props = None
        if u.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry_s
            props.ReceiveMaximum = self.receive_maximum
            client.connect_async(u.host, u.port, u.keepalive, clean_start=False,
                                 properties=props)
        else:
            client.connect_async(u.host, u.port, u.keepalive)
        self._client = client
        client.loop_start()
        self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.sub.name}")
        log.info("MQTT consumer %s connecting to %s", self.client_id, u.redacted())

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until connected and subscribed (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()
            await self._subscribed.wait()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        self._connected.clear()
        self._subscribed.clear()
        for buf in self._bufs:
            buf.clear()

    # --- paho's thread ----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if getattr(rc, "is_failure", False) or _reason_code(rc) not in (0, -1):
            log.error("MQTT broker %s refused %s: %s", self.url.redacted(), self.client_id, rc)
            return
        self._generation += 1
        self.stats.connects += 1
        shared = bool(self.url.shared)
        if shared and self.url.v5 and getattr(props, "SharedSubscriptionAvailable", 1) == 0:
            log.warning("the MQTT broker has no shared subscriptions: subscribing plainly")
            shared = False
        self._shared = bool(shared)
        group = self.sub.name
        for topic in self.sub.topics:
            wanted = f"$share/{group}/{topic}" if shared else topic
            other = topic if shared else f"$share/{group}/{topic}"
            # A session kept from a run with the other setting would deliver twice.
            client.unsubscribe(other)
            _, mid = client.subscribe(wanted, qos=1)
            if mid is not None:
                self._pending_subs[mid] = True
        log.info("MQTT consumer %s connected (session present: %s, shared: %s)",
                 self.client_id, getattr(flags, "session_present", None), shared)
        self._signal(self._connected.set)

    def _on_subscribe(self, client: mqtt.Client, _ud: Any, mid: int, codes: Any,
                      props: Any) -> None:
        for code in codes or ():
            if _reason_code(code) >= 0x80:
                log.error("MQTT broker refused the subscription of %s: %s", self.client_id,
                          code)
        self._pending_subs.pop(mid, None)
        if not self._pending_subs:
            self._signal(self._subscribed.set)

    def _on_disconnect(self, client: mqtt.Client, _ud: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        self.stats.disconnects += 1
        code = _reason_code(rc)
        if code == 142:  # MQTT 5 "Session taken over"
            log.error("another process connected as %s and took this worker's session: "
                      "give each worker its own ANWANG_MQTT_WORKER_ID", self.client_id)
        elif code not in (0, -1):
            log.warning("MQTT consumer %s disconnected: %s", self.client_id, rc)
        self._signal(self._connected.clear)
        self._signal(self._subscribed.clear)

    def _on_message(self, client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_publish(msg.topic, bytes(msg.payload), msg.qos, msg.retain, bool(msg.dup),
                         msg.mid, msg.properties)

    def _on_publish(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool,
                    mid: int, props: Properties | None) -> None:
        response = correlation = None
        if props is not None:
            response = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
        lane_of = self._lane_of
        buf = self._buf if lane_of is None else self._bufs[lane_of(topic)]
        buf.append(Message(topic, payload, qos, retain, dup, mid, time.time(),
                           self._generation, response, correlation))
        if not self._wake_pending:
            self._wake_pending = True
            self._signal(self._wake.set)

    def _signal(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    # --- the event loop ---------------------------------------------------------------

    async def _run(self) -> None:
        if self._lane_of is not None:
            await self._run_lanes()
            return
        running: set[asyncio.Task[None]] = set()
        limit = max(1, self.sub.concurrency)
        try:
            while True:
                if len(running) >= limit:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if not self._buf:
                    await self._wake.wait()
                self._wake.clear()
                self._wake_pending = False
                batch = self._take(self._buf)
                if not batch:
                    continue
                if limit == 1:
                    await self._process(batch)
                    continue
                self._start(batch, running)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run_lanes(self) -> None:
        """:meth:`_run` with lanes: each lane's batches taken from its own buffer, up to
        ``concurrency`` of them running per lane."""
        bufs = self._bufs
        running: list[set[asyncio.Task[None]]] = [set() for _ in bufs]
        limit = max(1, self.sub.concurrency)
        try:
            while True:
                self._wake.clear()
                self._wake_pending = False
                started = False
                for buf, lane in zip(bufs, running, strict=True):
                    if not buf or len(lane) >= limit:
                        continue
                    self._start(self._take(buf), lane)
                    started = True
                if started:
                    continue
                wake = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({wake}.union(*running),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wake.cancel()
        finally:
            tasks = [t for lane in running for t in lane]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self, buf: deque[Message]) -> list[Message]:
        """Up to ``max_batch`` messages from the front of ``buf``, counted as a batch
        when there are any."""
        batch: list[Message] = []
        while buf and len(batch) < self.sub.max_batch:
            batch.append(buf.popleft())
        if batch:
            self.stats.received += len(batch)
            self.stats.batches += 1
            self.stats.batch_sizes.append(len(batch))
        return batch

    def _start(self, batch: list[Message], running: set[asyncio.Task[None]]) -> None:
        """Handle ``batch`` in a task of its own, kept in ``running`` while it runs."""
        task = asyncio.create_task(self._process(batch))
        running.add(task)
        task.add_done_callback(self._batch_done(running))

    def _batch_done(self, running: set[asyncio.Task[None]]
                    ) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("MQTT batch of %s failed outside its handler", self.client_id,
                          exc_info=task.exception())

        return done

    async def _process(self, batch: list[Message]) -> None:
        """Handle ``batch`` until it succeeded or its poison was set aside; then ack."""
        attempt = 0
        while True:
            try:
                await self.sub.handler(batch)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is dealt with below
                attempt += 1
                self.stats.retries += 1
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
                transient = _transient(exc)
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt, 10))
                if transient or attempt < self.sub.max_attempts:
                    log.warning("MQTT batch of %d failed (attempt %d, %s); retrying in %.1fs",
                                len(batch), attempt,
                                "transient" if transient else "error", delay,
                                exc_info=not transient)
                    await asyncio.sleep(delay)
                    continue
                if len(batch) > 1:
                    half = len(batch) // 2
                    await self._process(batch[:half])
                    await self._process(batch[half:])
                    return
                log.error("MQTT message on %s failed %d times; set aside", batch[0].topic,
                          attempt, exc_info=exc)
                self.stats.dead += 1
                if self.sub.on_dead is not None:
                    try:
                        await self.sub.on_dead(batch[0], exc)
                    except Exception:  # noqa: BLE001 - recording is best-effort here
                        log.exception("recording a dead MQTT message failed")
                break
        self.stats.handled += len(batch)
        self._ack(batch)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                correlation_data: bytes | None = None) -> bool:
        """Publish on this worker's connection (replies to devices), without waiting for
        the broker's acknowledgement; paho holds a QoS 1 message over a reconnect.
        ``correlation_data`` is sent under MQTT 5 only. False when stopped."""
        client = self._client
        if client is None:
            return False
        props = None
        if correlation_data is not None and self.url.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation_data
        client.publish(topic, payload, qos=qos, properties=props)
        return True

    def _ack(self, batch: Sequence[Message]) -> None:
        client = self._client
        if client is None:
            return
        gen = self._generation
        mids: list[int] = []
        for m in batch:
            if m.qos == 0:
                continue
            if m.generation != gen:
                self.stats.stale_acks += 1
                continue
            if m.qos == 1:
                mids.append(m.mid)
            else:
                client.ack(m.mid, m.qos)
            self.stats.acked += 1
        if isinstance(client, _BufferedClient):
            client.ack_many(mids)
        else:
            for mid in mids:
                client.ack(mid, 1)


async def publish_once(url: str | MqttUrl, topic: str, payload: bytes, *, qos: int = 1,
                       client_id: str = "", timeout: float = 10.0) -> None:
    """Publish one message and wait for the broker's acknowledgement (tests, tools)."""
    u = url if isinstance(url, MqttUrl) else MqttUrl.parse(url)

    def run() -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=u.protocol)
        if u.username is not None:
            c.username_pw_set(u.username, u.password)
        if u.tls:
            c.tls_set_context(u.tls_context())
        c.connect(u.host, u.port, u.keepalive)
        c.loop_start()
        try:
            info = c.publish(topic, payload, qos=qos)
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError(f"the broker did not acknowledge {topic}")
        finally:
            c.disconnect()
            c.loop_stop()

    await asyncio.to_thread(run)
