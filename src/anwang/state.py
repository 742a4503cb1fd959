"""What a running app holds: built once by :func:`anwang.app.create_app`, stored on
``app.state.anwang`` and reached by request dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from anwang.core.bus import Bus
from anwang.core.db import Database
from anwang.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    bus: Bus
    #: Consumers started in this process (the API process runs them only on the embedded bus).
    run_consumers: bool = True
    extras: dict[str, object] = field(default_factory=dict)
