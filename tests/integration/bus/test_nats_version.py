"""anwang warns when its NATS server predates 2.10 (no sync-before-ack, older durability)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from anwang.infra.nats_bus import server_is_old, warn_if_old_server


@pytest.mark.parametrize(
    ("major", "minor", "old"),
    [(2, 9, True), (2, 10, False), (2, 15, False), (1, 99, True), (3, 0, False)],
)
def test_server_is_old(major: int, minor: int, old: bool) -> None:
    assert server_is_old(major, minor) is old


def test_warning_is_logged_for_an_old_server(caplog: pytest.LogCaptureFixture) -> None:
    old = SimpleNamespace(connected_server_version=SimpleNamespace(major=2, minor=9, patch=10))
    new = SimpleNamespace(connected_server_version=SimpleNamespace(major=2, minor=15, patch=1))
    with caplog.at_level(logging.WARNING, logger="anwang.infra.nats_bus"):
        warn_if_old_server(new)
        assert not caplog.records
        warn_if_old_server(old)
    assert "2.9.10 is older than 2.10" in caplog.text
