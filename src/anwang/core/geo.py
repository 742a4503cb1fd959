"""Coordinates and distances shared by every package (one implementation of each).

Coordinates are WGS 84 degrees; distances are metres on a sphere of the mean Earth
radius (IUGG R1), which is within 0.5% of the ellipsoid everywhere — ample for
dispatch, coverage and search radii, and what every package here assumes.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

#: Mean Earth radius R1 (IUGG), metres.
EARTH_RADIUS_M: Final = 6_371_008.8


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> Any:
    """Great-circle distance in metres between points in degrees (vectorised, float64;
    scalars in, a numpy scalar out)."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin((p2 - p1) / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """:func:`haversine_m` for two plain points, without numpy's overhead."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
