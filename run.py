#!/usr/bin/env python3
"""Quickstart: ``python3 run.py demo`` runs the demo; ``python3 run.py test`` runs the tests.

Needs only Python 3.11+ and git. It makes a virtual environment in ``.venv`` (once, and
again when ``pyproject.toml`` changes), installs anwang with its test dependencies, and
then runs ``anwang demo`` or ``pytest`` (in parallel, one worker per CPU up to four,
unless the arguments say ``-n``). Any further arguments are passed on:
``python3 run.py demo --seed 3 --port 8080``, ``python3 run.py test -k audit``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".anwang-installed"


def _python() -> str:
    return str(BIN / ("python.exe" if os.name == "nt" else "python"))


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit("anwang needs Python 3.11 or newer")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    if not VENV.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing anwang and its dependencies into .venv ...", flush=True)
    pip = [_python(), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(want)


MAX_WORKERS = 4


def _workers(args: list[str]) -> list[str]:
    """pytest-xdist's worker count: one per CPU, at most :data:`MAX_WORKERS` (each has
    its own PostgreSQL database, NATS servers and browser), none on one CPU or when the
    arguments choose already."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses", "-pno:xdist"))
                 for a in args) or "no:xdist" in args
    n = min(os.cpu_count() or 1, MAX_WORKERS)
    return [] if chosen or n < 2 else ["-n", str(n)]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "anwang"):
        print(__doc__)
        return 2
    ensure_env()
    cmd, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if cmd == "test":
        return subprocess.call([_python(), "-m", "pytest", *_workers(rest), *rest])
    if cmd == "demo":
        return subprocess.call([str(BIN / "anwang"), "demo", *rest])
    return subprocess.call([str(BIN / "anwang"), *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
