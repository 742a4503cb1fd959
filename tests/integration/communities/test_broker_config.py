"""``anwang devices broker-config`` makes a real Mosquitto accept each device with its
own key and let it publish only under its own topics; ``anwang simulate devices``
publishes what the intake understands."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from anwang.cli import app
from anwang.communities import intake
from anwang.communities.simulate import DeviceTraffic, SimDevice
from tests.conftest import need_service
from tests.integration.communities.conftest import Kit

pytestmark = [pytest.mark.mqtt]
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli_env(kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANWANG_DATABASE_URL",
                       kit.db.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ANWANG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANWANG_ENV", "dev")
    monkeypatch.setenv("ANWANG_MQTT_URL", "mqtt://anwang:intake-secret-0123@127.0.0.1:1883")
    return tmp_path


@pytest.fixture
def broker(cli_env: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        need_service("Mosquitto (the mosquitto binary)", "not installed")
    out = cli_env / "mosquitto"
    port = _free_port()
    r = runner.invoke(app, ["devices", "broker-config", "--out", str(out), "--port", str(port)])
    assert r.exit_code == 0, r.stderr
    if os.geteuid() == 0:  # run as root, Mosquitto would drop to a user who cannot read tmp
        with (out / "mosquitto.conf").open("a") as f:
            f.write("user root\n")
    log = out / "broker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([binary, "-c", str(out / "mosquitto.conf")],
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"mosquitto did not start: {log.read_text()}")
            time.sleep(0.05)
    yield port, out, proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def _client(port: int, user: str, password: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    return c


def test_each_device_publishes_only_under_its_own_topics(kit: Kit, cli_env: Path) -> None:
    key_a = kit.device("dev-a", "smoke_alarm")
    key_b = kit.device("dev-b", "smoke_alarm")
    kit.device("dev-old", "smoke_alarm")
    with kit.db.unit_of_work() as s:
        from anwang.communities import service
        from anwang.communities.schemas import DeviceUpdate

        service.update_device(s, device_id="dev-old", changes=DeviceUpdate(active=False),
                              actor="test")
    r = runner.invoke(app, ["devices", "broker-config", "--out", str(cli_env / "m")])
    assert r.exit_code == 0, r.stderr
    passwd = (cli_env / "m" / "passwd").read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["dev-a", "dev-b", "anwang"]
    assert "pattern write anwang/devices/%u/+" in (cli_env / "m" / "acl").read_text()
    del key_a, key_b


def test_the_broker_enforces_keys_and_topics(
    kit: Kit, broker: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, out, proc = broker
    # The devices must exist before the file is written: write it again, and reload.
    key_a = kit.device("dev-a", "gate_sensor")
    kit.device("dev-b", "gate_sensor")
    r = runner.invoke(app, ["devices", "broker-config", "--out", str(out), "--port", str(port)])
    assert r.exit_code == 0, r.stderr
    proc.send_signal(signal.SIGHUP)  # Mosquitto rereads its password file and ACL
    time.sleep(0.5)

    got: list[str] = []
    ready = threading.Event()
    intake_client = _client(port, "anwang", "intake-secret-0123")
    intake_client.on_message = lambda c, u, m: got.append(m.topic)
    intake_client.on_subscribe = lambda *a: ready.set()
    intake_client.subscribe("anwang/devices/+/+", qos=1)
    intake_client.loop_start()
    assert ready.wait(5)

    a = _client(port, "dev-a", key_a)
    a.loop_start()
    a.publish("anwang/devices/dev-a/events", b"{}", qos=1).wait_for_publish(5)
    a.publish("anwang/devices/dev-b/events", b"{}", qos=1).wait_for_publish(5)  # not its own
    a.publish("anwang/devices/dev-a/telemetry", b"{}", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert got == ["anwang/devices/dev-a/events", "anwang/devices/dev-a/telemetry"]
    a.disconnect()
    a.loop_stop()

    refused = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    refused.username_pw_set("dev-b", key_a)  # another device's key
    codes: list[int] = []
    refused.on_connect = lambda c, u, f, rc, p: codes.append(rc.value)
    refused.connect("127.0.0.1", port)
    refused.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    refused.loop_stop()
    assert codes and codes[0] != 0
    intake_client.disconnect()
    intake_client.loop_stop()


def test_checkpoint_accounts_write_only_their_own_reads(
    kit: Kit, broker: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    """Each active checkpoint gets an ACL block; its password comes from a file kept
    outside anwang (``--include-passwd``); the intake reads reads and unit positions."""
    from anwang.checkpoints import service as checkpoints
    from anwang.checkpoints.schemas import CheckpointCreate
    from anwang.communities.credentials import hash_key

    port, out, proc = broker
    with kit.db.unit_of_work() as s:
        for code in ("CP-A", "CP-B"):
            checkpoints.create_checkpoint(s, data=CheckpointCreate.model_validate({
                "code": code, "name": code, "kind": "police_checkpoint", "lat": 31.75,
                "lon": 119.87, "directions": ["in"], "lanes": 1}), actor="test")
    extra = out.parent / "checkpoint-accounts"
    extra.write_text(f"# collectors\nCP-A:{hash_key('cp-a-secret-0123')}\n")
    r = runner.invoke(app, ["devices", "broker-config", "--out", str(out), "--port", str(port),
                            "--include-passwd", str(extra)])
    assert r.exit_code == 0, r.stderr
    assert "user CP-B\ntopic write anwang/checkpoints/CP-B/reads\n" in (out / "acl").read_text()
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)

    got: list[str] = []
    ready = threading.Event()
    intake_client = _client(port, "anwang", "intake-secret-0123")
    intake_client.on_message = lambda c, u, m: got.append(m.topic)
    intake_client.on_subscribe = lambda *a: ready.set()
    intake_client.subscribe([("anwang/checkpoints/+/reads", 1), ("anwang/units/+/position", 1)])
    intake_client.loop_start()
    assert ready.wait(5)
    cp = _client(port, "CP-A", "cp-a-secret-0123")
    cp.loop_start()
    cp.publish("anwang/checkpoints/CP-B/reads", b"[]", qos=1).wait_for_publish(5)  # not its own
    cp.publish("anwang/units/U1/position", b"{}", qos=1).wait_for_publish(5)  # not a unit
    cp.publish("anwang/checkpoints/CP-A/reads", b"[]", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert got == ["anwang/checkpoints/CP-A/reads"]
    for c in (cp, intake_client):
        c.disconnect()
        c.loop_stop()


def test_simulated_traffic_is_understood_in_every_format(kit: Kit) -> None:
    devices = [
        SimDevice("s-native", "smoke_alarm", "native"),
        SimDevice("s-sentry", "smoke_alarm", "sentry_smoke"),
        SimDevice("s-nbiot", "smoke_alarm", "nbiot_smoke"),
        SimDevice("c-native", "charging_pile", "native"),
        SimDevice("c-volt", "charging_pile", "voltpile"),
        SimDevice("c-ocpp", "charging_pile", "ocpp16"),
        SimDevice("m-1", "manhole_cover", "native"),
        SimDevice("t-1", "throw_camera", "native", 1),
        SimDevice("g-1", "gate_sensor", "native"),
    ]
    for d in devices:
        kit.device(d.id, d.kind, adapter=d.adapter)
    traffic = DeviceTraffic(devices, seed=3, fault_share=0.2)
    start = time.time() - 3600
    messages = []
    for i in range(3000):
        topic, payload = traffic.next(start + i)
        inbound = intake.from_topic(topic, payload, start + i)
        assert inbound is not None
        messages.append(inbound)
    report = kit.ingest(*messages, now=kit_now(start + 3000))
    assert report.refused == [], report.refused[:3]
    assert report.accepted == 3000
    kinds = {a.kind for a in kit.alarms()}
    assert {"fire", "overheat", "cover_open", "object_thrown", "gate_forced"} <= kinds


def kit_now(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
