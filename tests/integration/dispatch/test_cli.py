"""``anwang coverage analyze`` and ``anwang coverage optimize``: the JSON contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anwang.auth import service as auth_service
from anwang.cli import app
from anwang.core import migrate
from anwang.core.db import Database
from anwang.dispatch import posts as posts_service
from anwang.roads.service import GRAPH_FILE

from .conftest import EAST, WEST, City

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, city: City) -> Path:
    monkeypatch.setenv("ANWANG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ANWANG_DATABASE_URL", raising=False)
    monkeypatch.setenv("ANWANG_ENV", "dev")
    url = f"sqlite:///{tmp_path / 'anwang.db'}"
    migrate.upgrade(url)
    shutil.copy(city.graph_file, tmp_path / GRAPH_FILE)
    db = Database(url)
    with db.unit_of_work() as s:
        auth_service.load_jurisdictions(s, feature_collection=city.tree, actor="test")
        for i, (d, k) in enumerate([(WEST, 1), (WEST, 2), (EAST, 3), (EAST, 4)]):
            lat, lon = city.point(d, k)
            posts_service.create_post(s, data=posts_service.PostInput(
                code=f"KF-{i}", name=f"快反{i}", kind="quick_response", lat=lat, lon=lon),
                actor="test")
    db.dispose()
    return tmp_path


def test_analyze_json(env: Path) -> None:
    r = runner.invoke(app, ["coverage", "analyze", "--minutes", "1,3,5", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["posts"] == 4
    assert [t["minutes"] for t in out["thresholds"]] == [1, 3, 5]
    assert {d["code"] for d in out["thresholds"][0]["districts"]} >= {WEST, EAST}
    r = runner.invoke(app, ["coverage", "analyze"])
    assert r.exit_code == 0 and "320401" in r.stderr


def test_optimize_json(env: Path, tmp_path: Path, city: City) -> None:
    lat, lon = city.point(WEST, 99)
    cands = tmp_path / "cands.csv"
    cands.write_text(f"lat,lon\n{lat},{lon}\n", encoding="utf-8")
    r = runner.invoke(app, ["coverage", "optimize", "--posts", "4", "--minutes", "3",
                            "--keep", "KF-0", "--time-limit", "20", "--max-candidates", "200",
                            "--candidates", str(cands), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("objective", "bound", "gap", "covered_share_before", "covered_share_after",
                "seconds", "sites"):
        assert key in out, key
    assert 0 <= out["gap"] < 0.01 and out["objective"] <= out["bound"] + 1e-6
    assert len(out["sites"]) == 4 and "KF-0" in {s["code"] for s in out["sites"]}
    assert out["covered_share_after"] >= out["covered_share_before"]
    assert out["candidates"]["imported"] == 1

    r = runner.invoke(app, ["coverage", "optimize", "--posts", "4", "--minutes", "3",
                            "--time-limit", "5", "--max-candidates", "50"])
    assert r.exit_code == 0 and "moves" in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--posts", "9", "--no-generate"], "p: asks for 9 posts"),
    (["--posts", "1", "--keep", "KF-0,KF-1", "--no-generate"], "keep"),
    (["--posts", "2", "--keep", "KF-404"], "keep: not an active"),
    (["--posts", "2", "--minutes", "0"], "minutes"),
])
def test_optimize_refuses_bad_input(env: Path, args: list[str], message: str) -> None:
    r = runner.invoke(app, ["coverage", "optimize", "--time-limit", "5", *args, "--json"])
    assert r.exit_code == 2, r.stdout
    assert message in r.stderr and r.stdout == ""
