"""Every durable bus consumer of every domain, in one list for ``serve`` and ``worker``."""

from __future__ import annotations

from anwang.core.bus import Consumer


def all_consumers() -> list[Consumer]:
    """Domains append their consumers here (``from anwang.<domain>.handlers import ...``)."""
    consumers: list[Consumer] = []
    from anwang.checkpoints.handlers import CONSUMERS as checkpoints

    consumers.extend(checkpoints)
    return consumers
