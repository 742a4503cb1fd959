"""MQTT over TLS against a Mosquitto of the test's own: the consumer verifies the
broker's certificate against the CA named in ``ANWANG_MQTT_URL`` (``?ca=``), refuses a
broker whose certificate another CA signed, and presents a client certificate
(``?cert=&key=``) to a broker that requires one."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from anwang.infra.mqtt import Message, MqttConsumer, Subscription, publish_once
from tests.conftest import need_service

pytestmark = [pytest.mark.mqtt]


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Authority:
    """A throw-away certificate authority writing PEM files into ``folder``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / f"{name}-ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = self.folder / f"{self.name}-{common_name}"
        out = Issued(stem.with_suffix(".pem"), stem.with_suffix(".key"))
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        out.key.chmod(0o600)
        return out


class TlsBroker:
    """Mosquitto with one TLS listener on a free port."""

    def __init__(self, folder: Path, ca: Authority, *, require_client_cert: bool) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            need_service("Mosquitto (the mosquitto binary)", "not installed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        server = ca.issue("broker", server=True)
        conf = folder / f"mosquitto-{self.port}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"cafile {ca.pem}\ncertfile {server.cert}\nkeyfile {server.key}\n"
            f"require_certificate {'true' if require_client_cert else 'false'}\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("the TLS mosquitto did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "city")


@pytest.fixture
def broker(tmp_path: Path, ca: Authority) -> Iterator[TlsBroker]:
    b = TlsBroker(tmp_path, ca, require_client_cert=False)
    yield b
    b.stop()


@pytest.fixture
def mutual_broker(tmp_path: Path, ca: Authority) -> Iterator[TlsBroker]:
    b = TlsBroker(tmp_path, ca, require_client_cert=True)
    yield b
    b.stop()


async def _receive_one(url: str, publish_url: str, topic: str) -> list[Message]:
    got: list[Message] = []

    async def handler(batch: Sequence[Message]) -> None:
        got.extend(batch)

    consumer = MqttConsumer(url, Subscription("tls-test", (topic,), handler), worker_id="t1")
    await consumer.start()
    try:
        await consumer.wait_ready(timeout=10)
        await publish_once(publish_url, topic, b'{"hello": "tls"}')
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    return got


def test_the_consumer_verifies_the_broker_against_the_configured_ca(
    broker: TlsBroker, ca: Authority,
) -> None:
    url = f"mqtts://127.0.0.1:{broker.port}?ca={ca.pem}&shared=0"
    got = asyncio.run(_receive_one(url, url, "anwang/tls/one"))
    assert [m.payload for m in got] == [b'{"hello": "tls"}']


# paho leaves the socket of a failed TLS handshake to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_broker_certificate_from_another_ca_is_refused(
    broker: TlsBroker, tmp_path: Path,
) -> None:
    stranger = Authority(tmp_path, "stranger")
    url = f"mqtts://127.0.0.1:{broker.port}?ca={stranger.pem}&shared=0"

    assert asyncio.run(_connects(url)) is False, "connected to a broker it must not trust"
    with pytest.raises(OSError):  # ssl.SSLCertVerificationError is an OSError
        asyncio.run(publish_once(url, "anwang/tls/x", b"{}"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_client_certificate_is_presented_when_the_broker_requires_one(
    mutual_broker: TlsBroker, ca: Authority,
) -> None:
    client = ca.issue("worker-1", server=False)
    base = f"mqtts://127.0.0.1:{mutual_broker.port}?ca={ca.pem}&shared=0"
    url = f"{base}&cert={client.cert}&key={client.key}"
    got = asyncio.run(_receive_one(url, url, "anwang/tls/mutual"))
    assert [m.payload for m in got] == [b'{"hello": "tls"}']

    assert asyncio.run(_connects(base)) is False, "a client without a certificate got in"


async def _discard(batch: Sequence[Message]) -> None:
    return None


async def _connects(url: str) -> bool:
    """Whether a consumer on ``url`` gets connected and subscribed within 3 s."""
    consumer = MqttConsumer(url, Subscription("tls-test", ("anwang/tls/#",), _discard),
                            worker_id="t2")
    await consumer.start()
    try:
        await consumer.wait_ready(timeout=3)
    except TimeoutError:
        return False
    finally:
        await consumer.stop()
    return True
