"""Fixtures of the alert tests: the watch-list tests' seeded database, app and client
(alerts are raised from the same seeded watch list)."""

from tests.integration.watchlist.conftest import app, client, kit

__all__ = ["app", "client", "kit"]
