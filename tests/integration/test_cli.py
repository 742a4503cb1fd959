"""The command-line contract: db upgrade, demo, user add, apikey create, audit verify/export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from anwang.cli import app
from anwang.core.db import Database


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANWANG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ANWANG_DATABASE_URL", raising=False)
    monkeypatch.setenv("ANWANG_ENV", "dev")
    monkeypatch.chdir(tmp_path)
    return tmp_path


runner = CliRunner()


def _run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), input=input)
    return r.exit_code, r.stdout, r.stderr


def test_help_everywhere() -> None:
    for cmd in ([], ["db"], ["audit"], ["user"], ["apikey"], ["demo"], ["serve"], ["worker"]):
        code, out, _ = _run(*cmd, "--help")
        assert code == 0, cmd
        assert "Usage" in out


def test_upgrade_user_apikey_and_audit(env: Path) -> None:
    assert _run("db", "upgrade")[0] == 0
    code, _, err = _run(
        "user", "add", "alice", "--role", "dispatcher", "--password-stdin",
        input="a-long-enough-password\n",
    )
    assert code == 0, err
    code, out, err = _run("apikey", "create", "--name", "gate-1", "--role", "device")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ak_")

    code, out, _ = _run("audit", "verify")
    assert code == 0 and "intact" in out

    code, out, _ = _run("audit", "export")
    assert code == 0
    cp = json.loads(out)
    assert cp["intact"] is True and cp["seq"] >= 3
    cp_file = env / "cp.json"
    cp_file.write_text(out)
    assert _run("audit", "verify", "--checkpoint", str(cp_file))[0] == 0

    # Tamper with an entry: verify exits 1 and names it.
    db = Database(f"sqlite:///{env / 'anwang.db'}")
    with db.engine.begin() as c:
        c.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    db.dispose()
    code, out, _ = _run("audit", "verify")
    assert code == 1
    assert "entry 2" in out


def test_checkpoint_catches_a_rewound_log(env: Path) -> None:
    assert _run("db", "upgrade")[0] == 0
    for name in ("bob", "carol"):
        _run("user", "add", name, "--role", "analyst", "--password-stdin",
             input="a-long-enough-password\n")
    code, out, _ = _run("audit", "export")
    (env / "cp.json").write_text(out)
    seq = json.loads(out)["seq"]
    db = Database(f"sqlite:///{env / 'anwang.db'}")
    with db.engine.begin() as c:  # drop the tail and rewind the head consistently
        prev = c.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq - 1}).scalar()
        c.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq})
        c.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": seq - 1, "h": prev})
    db.dispose()
    assert _run("audit", "verify")[0] == 0  # the chain alone cannot see it...
    code, out, _ = _run("audit", "verify", "--checkpoint", str(env / "cp.json"))
    assert code == 1 and "missing" in out  # ...the signed checkpoint can


def test_bad_input_exits_2_with_a_message(env: Path) -> None:
    assert _run("db", "upgrade")[0] == 0
    code, _, err = _run("user", "add", "dave", "--role", "emperor", "--password-stdin",
                        input="a-long-enough-password\n")
    assert code == 2 and "role" in err
    code, _, err = _run("user", "add", "dave", "--role", "analyst", "--password-stdin",
                        input="short\n")
    assert code == 2 and "password" in err


def test_serve_refuses_an_unmigrated_database(env: Path) -> None:
    code, _, err = _run("serve")
    assert code == 2 and "anwang db upgrade" in err


def test_worker_needs_a_shared_bus(env: Path) -> None:
    code, _, err = _run("worker")
    assert code == 2 and "nats://" in err


def test_prod_refuses_the_default_secret(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANWANG_ENV", "prod")
    code, _, err = _run("db", "upgrade")
    assert code == 2 and "ANWANG_SECRET_KEY" in err


def test_demo_loads_the_city_and_logins(env: Path) -> None:
    code, _, err = _run("demo", "--no-serve", "--seed", "7")
    assert code == 0, err
    assert "dispatcher-demo-2026" in err
    assert (env / "roads.npz").exists() and (env / "roads.geojson").exists()
    db = Database(f"sqlite:///{env / 'anwang.db'}")
    with db.engine.connect() as c:
        levels = dict(
            c.execute(text("SELECT level, count(*) FROM jurisdictions GROUP BY level")).all()
        )
        users = c.execute(text("SELECT count(*) FROM users")).scalar()
    db.dispose()
    assert levels["city"] == 1 and levels["district"] == 6
    assert 30 <= levels["station"] <= 80 and levels["grid"] >= 1000
    assert users == 8
    # A second run reuses the loaded city and keeps the users.
    code, _, err = _run("demo", "--no-serve", "--seed", "7")
    assert code == 0 and "already loaded" in err


def test_dead_events_are_listed_and_replayed(env: Path) -> None:
    """``anwang events dead`` lists what the consumers gave up on; ``events replay`` runs
    it through the consumer again and says which ones still fail."""
    from anwang.checkpoints.events import READ_BATCH_RECEIVED
    from anwang.core.db import DeadEvent
    from anwang.core.events import Event, utcnow

    assert _run("db", "upgrade")[0] == 0
    db = Database(f"sqlite:///{env / 'anwang.db'}")
    gone = Event(name="anwang.test.thing.happened", payload={})
    empty_batch = Event(name=READ_BATCH_RECEIVED, payload={
        "received_at": utcnow().isoformat(), "source": "test", "checkpoints": {}, "reads": []})
    with db.unit_of_work() as s:
        for consumer, event in (("retired.consumer", gone),
                                ("checkpoints.store_reads", empty_batch)):
            s.add(DeadEvent(consumer=consumer, event_id=event.id, name=event.name,
                            event=event.to_json().decode(), error="RuntimeError: boom",
                            attempts=5, failed_at=utcnow()))
    code, out, err = _run("events", "dead")
    assert code == 0 and gone.id in out and empty_batch.id in out and "2 dead event(s)" in err

    code, out, err = _run("events", "replay")
    assert code == 1, err
    assert f"ok      checkpoints.store_reads  {empty_batch.id}" in out
    assert f"FAILED  retired.consumer  {gone.id}" in out and "no such consumer" in out
    code, out, err = _run("events", "dead")
    assert gone.id in out and empty_batch.id not in out
    assert empty_batch.id in _run("events", "dead", "--all")[1]
    code, out, _ = _run("audit", "verify")
    assert code == 0
    db.dispose()
