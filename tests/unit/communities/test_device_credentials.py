"""Device keys hashed as Mosquitto hashes passwords, and the MQTT URL setting."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.communities import credentials
from anwang.infra.mqtt import MqttUrl
from tests.conftest import need_service


def test_new_keys_verify_and_differ() -> None:
    a, b = credentials.new_key(), credentials.new_key()
    assert a != b and a.startswith("dk_") and len(a) > 40
    h = credentials.hash_key(a)
    assert h.startswith("$7$101$")
    assert credentials.verify_key(h, a)
    assert not credentials.verify_key(h, b)
    assert credentials.hash_key(a) != h  # salted


@given(st.text(min_size=1, max_size=80))
def test_only_the_key_itself_verifies(key: str) -> None:
    h = credentials.hash_key("dk_the-real-key-0123456789", iterations=2)
    assert credentials.verify_key(h, key) == (key == "dk_the-real-key-0123456789")


@pytest.mark.parametrize("stored", ["", "plain", "$6$1$a$b", "$7$x$AA==$AA==", "$7$1$!!$AA==",
                                    "$7$99999999$AA==$AA=="])
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not credentials.verify_key(stored, "anything")


def test_mosquitto_passwd_and_anwang_agree(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        need_service("mosquitto_passwd", "install Debian's mosquitto package")
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "dev1", "s3cret-key-0123456"],
                   check=True)
    stored = f.read_text().strip().split(":", 1)[1]
    assert credentials.verify_key(stored, "s3cret-key-0123456")
    assert not credentials.verify_key(stored, "s3cret-key-0123457")


def test_mqtt_urls() -> None:
    u = MqttUrl.parse("mqtt://anwang:p%40ss@broker.example:1884")
    assert (u.host, u.port, u.username, u.password, u.tls) == (
        "broker.example", 1884, "anwang", "p@ss", False)
    assert u.protocol == mqtt.MQTTv5 and u.shared is None
    assert u.redacted() == "mqtt://anwang:***@broker.example:1884"
    t = MqttUrl.parse("mqtts://broker.example?protocol=3.1.1&shared=1&ca=/etc/ca.pem")
    assert (t.port, t.tls, t.protocol, t.shared, t.ca_file) == (
        8883, True, mqtt.MQTTv311, True, "/etc/ca.pem")
    for bad in ("http://x", "mqtt://", "mqtt://h?protocol=4.0"):
        with pytest.raises(ValueError):
            MqttUrl.parse(bad)
