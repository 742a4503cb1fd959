"""What one accepted plate read is, as the watch-list and alert packages see it.

A small frozen value shared across package boundaries (checkpoints → watchlist →
alerts), so that neither side imports the other's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ReadFacts:
    read_id: str
    checkpoint_code: str
    checkpoint_name: str
    checkpoint_kind: str
    #: ``in`` or ``out`` (relative to the city or the checkpoint's area).
    direction: str
    lane: int | None
    #: When the camera captured the plate (UTC).
    captured_at: datetime
    #: Normalised plate text.
    plate: str
    plate_color: str | None
    confidence: float | None
    lat: float
    lon: float
    #: Finest jurisdiction of the checkpoint (a grid code), or None outside the tree.
    jurisdiction_code: str | None
    vehicle: dict[str, Any] | None = field(default=None)
    image_ref: str | None = None
