"""``anwang devices broker-config`` and ``anwang simulate devices``.

``broker-config`` writes what a Mosquitto broker needs so that each device may publish
only under its own topics (``docs/devices.md`` explains other brokers):

* ``passwd`` — one line per active device, ``<device id>:<stored key hash>`` (anwang keeps
  device keys in Mosquitto's own ``$7$`` PBKDF2-SHA512 format, so no key is needed to
  write the file), plus the accounts of anwang's intake and of the simulator when their
  passwords are given;
* ``acl`` — the intake may read ``anwang/devices/#``, checkpoints' reads and units'
  positions, and write the checkpoints' result topics; each active checkpoint's account
  (user name = checkpoint code) may write only its own reads topic and read its own
  result topic; every other account may write only ``anwang/devices/<its user name>/+``
  (Mosquitto's ``%u`` pattern). Checkpoint accounts' passwords are not anwang's: keep
  them in a file of your own that ``--include-passwd`` appends;
* ``mosquitto.conf`` — a listener configuration that uses both, with persistence and a
  per-session queue big enough to ride out an anwang restart.

Regenerate and reload the broker (``kill -HUP``) after registering, deactivating or
re-keying devices.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from sqlalchemy import select

from anwang.checkpoints.models import Checkpoint
from anwang.communities import credentials
from anwang.communities.models import Device
from anwang.settings import Settings

if TYPE_CHECKING:
    from anwang.communities.simulate import DeviceTraffic

devices_app = typer.Typer(help="Community devices: broker configuration.", no_args_is_help=True)
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: show it plainly
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


ACL = """\
# anwang's MQTT topics (written by `anwang devices broker-config`).
# anwang's intake reads what every device, checkpoint and unit sends, and answers each
# checkpoint's batch of reads on its result topic.
user {intake}
topic read anwang/devices/#
topic read anwang/checkpoints/+/reads
topic write anwang/checkpoints/+/reads/result
topic read anwang/units/+/position
{simulator}{checkpoints}
# Everyone else writes only under their own user name, which is the device id.
pattern write anwang/devices/%u/+
"""

CONF = """\
# Mosquitto listener for anwang's devices (written by `anwang devices broker-config`).
# Include it from mosquitto.conf, or start `mosquitto -c {dir}/mosquitto.conf`.
per_listener_settings false
listener {port}
# For TLS (recommended outside a closed network), uncomment and point at your files:
# certfile /etc/mosquitto/certs/server.crt
# keyfile /etc/mosquitto/certs/server.key
# cafile /etc/mosquitto/certs/ca.crt
allow_anonymous false
password_file {dir}/passwd
acl_file {dir}/acl
# Keep sessions and queued messages across broker restarts.
persistence true
persistence_location {dir}/
autosave_interval 60
# Messages held for a stopped anwang worker (QoS 1) beyond those in flight; size it for
# the longest outage to ride out: messages per second x seconds.
max_queued_messages 1000000
max_queued_bytes 0
# Unacknowledged messages in flight to one MQTT 3.1.1 client (MQTT 5 clients say their
# own receive maximum; anwang asks for ANWANG_MQTT_RECEIVE_MAXIMUM).
max_inflight_messages 1000
"""


@devices_app.command("broker-config")
def broker_config(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")] = Path(
        "var/mosquitto"),
    intake_user: Annotated[str, typer.Option(help="anwang's intake account.")] = "anwang",
    intake_password: Annotated[str | None, typer.Option(
        envvar="ANWANG_MQTT_INTAKE_PASSWORD",
        help="Its password (default: the one in ANWANG_MQTT_URL).")] = None,
    simulator_user: Annotated[str | None, typer.Option(
        help="An account for `anwang simulate devices` that may write every device topic "
             "(test and demo brokers only).")] = None,
    simulator_password: Annotated[str | None, typer.Option(
        envvar="ANWANG_MQTT_SIMULATOR_PASSWORD")] = None,
    port: Annotated[int, typer.Option(help="Listener port in mosquitto.conf.")] = 1883,
    include_passwd: Annotated[Path | None, typer.Option(
        help="A Mosquitto password file of accounts kept outside anwang (checkpoints' "
             "collectors, say) to append to the written one.")] = None,
) -> None:
    """Write Mosquitto's password file, ACL and listener configuration for the devices."""
    from anwang.core.db import Database
    from anwang.infra.mqtt import MqttUrl

    settings = _settings()
    if intake_password is None and settings.mqtt_url:
        u = MqttUrl.parse(settings.mqtt_url)
        if u.username == intake_user:
            intake_password = u.password
    db = Database(settings.resolved_database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            rows = session.execute(
                select(Device.id, Device.credential_hash).where(Device.active.is_(True))
                .order_by(Device.id)
            ).all()
            checkpoint_codes = list(session.scalars(
                select(Checkpoint.code).where(Checkpoint.active.is_(True))
                .order_by(Checkpoint.code)))
    finally:
        db.dispose()
    names = {intake_user, simulator_user} - {None} | set(checkpoint_codes)
    clash = [d for d, _ in rows if d in names]
    if clash:
        err.print(f"[red]device ids clash with service accounts:[/red] {', '.join(clash)}")
        raise typer.Exit(2)
    lines = [f"{d}:{h}" for d, h in rows]
    if include_passwd is not None:
        try:
            extra = include_passwd.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            err.print(f"[red]cannot read {include_passwd}:[/red] {exc}")
            raise typer.Exit(2) from exc
        lines.extend(line for line in extra if line.strip() and not line.startswith("#"))
    if intake_password:
        lines.append(f"{intake_user}:{credentials.hash_key(intake_password)}")
    else:
        err.print(f"[yellow]no password for {intake_user!r}: add it with "
                  f"`mosquitto_passwd {out / 'passwd'} {intake_user}`[/yellow]")
    simulator = ""
    if simulator_user:
        if not simulator_password:
            err.print("[red]--simulator-user needs --simulator-password[/red]")
            raise typer.Exit(2)
        lines.append(f"{simulator_user}:{credentials.hash_key(simulator_password)}")
        simulator = f"\n# The demo simulator writes for every device.\nuser {simulator_user}\n" \
                    "topic write anwang/devices/#\n"
    out.mkdir(parents=True, exist_ok=True)
    passwd = out / "passwd"
    passwd.write_text("\n".join(lines) + "\n", encoding="utf-8")
    passwd.chmod(0o600)
    checkpoints = "".join(
        f"\nuser {code}\ntopic write anwang/checkpoints/{code}/reads\n"
        f"topic read anwang/checkpoints/{code}/reads/result\n"
        for code in checkpoint_codes)
    if checkpoints:
        checkpoints = "\n# Each checkpoint sends its own reads and reads its own reports." \
            + checkpoints
    (out / "acl").write_text(
        ACL.format(intake=intake_user, simulator=simulator, checkpoints=checkpoints),
        encoding="utf-8")
    (out / "mosquitto.conf").write_text(CONF.format(dir=out.resolve(), port=port),
                                        encoding="utf-8")
    err.print(f"{len(rows)} device account(s) written to {passwd}; ACL and listener "
              f"configuration in {out}. Reload the broker to apply (kill -HUP).")


def simulate_devices(
    rate: Annotated[str, typer.Option(help="Messages per second, e.g. 200 or 200/s.")] = "50/s",
    duration: Annotated[float, typer.Option(help="Seconds to run (0: until stopped).")] = 0.0,
    fault_share: Annotated[float, typer.Option(
        help="Share of messages that start an incident (smoke, overheating, ...).")] = 0.002,
    community: Annotated[str | None, typer.Option(help="Only this community's devices.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 7,
    url: Annotated[str | None, typer.Option(
        help="Broker URL (default ANWANG_MQTT_URL, else mqtt://127.0.0.1:1883).")] = None,
) -> None:
    """Publish realistic telemetry, heartbeats and occasional incidents of the registered
    devices to the MQTT broker, each in its device's own format (QoS 1)."""
    from anwang.communities.simulate import DeviceTraffic, SimDevice
    from anwang.core.db import Database

    per_second = float(rate.removesuffix("/s"))
    if per_second <= 0:
        raise typer.BadParameter("the rate must be positive", param_hint="--rate")
    settings = _settings()
    db = Database(settings.resolved_database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            stmt = select(Device.id, Device.kind, Device.adapter, Device.floor).where(
                Device.active.is_(True))
            if community:
                stmt = stmt.where(Device.community_code == community)
            devices = [SimDevice(*r) for r in session.execute(stmt)]
    finally:
        db.dispose()
    if not devices:
        err.print("[red]no active devices registered[/red] (run `anwang demo` first)")
        raise typer.Exit(2)
    traffic = DeviceTraffic(devices, seed=seed, fault_share=fault_share)
    target = url or settings.mqtt_url or "mqtt://127.0.0.1:1883"
    err.print(f"publishing for {len(devices)} devices at {per_second:g}/s to {target}")
    sent = asyncio.run(_publish(target, traffic, per_second, duration))
    err.print(f"published {sent} messages")


async def _publish(url: str, traffic: DeviceTraffic, per_second: float,
                   duration: float) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from anwang.infra.mqtt import MqttUrl

    u = MqttUrl.parse(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=u.protocol)
    if u.username is not None:
        client.username_pw_set(u.username, u.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(20_000)
    client.connect(u.host, u.port, u.keepalive)
    client.loop_start()
    sent = 0
    start = time.monotonic()
    tick = 0.05
    try:
        while duration <= 0 or time.monotonic() - start < duration:
            due = int((time.monotonic() - start) * per_second) - sent
            now = time.time()
            for _ in range(max(0, due)):
                topic, payload = traffic.next(now)
                client.publish(topic, payload, qos=1)
                sent += 1
            await asyncio.sleep(tick)
    except KeyboardInterrupt:
        pass
    finally:
        deadline = time.monotonic() + 10
        while client.want_write() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        client.disconnect()
        client.loop_stop()
    return sent
