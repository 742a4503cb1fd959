"""Great-circle distances: known values, symmetry, and the scalar and array forms agree."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from anwang.core.geo import EARTH_RADIUS_M, distance_m, haversine_m

lat = st.floats(-89.9, 89.9)
lon = st.floats(-180, 180)


def test_known_distances() -> None:
    # One degree of latitude on the mean sphere.
    assert math.isclose(distance_m(0, 0, 1, 0), EARTH_RADIUS_M * math.pi / 180, rel_tol=1e-12)
    # Changzhou to Nanjing (Xinjiekou), about 115 km as the crow flies.
    assert 105_000 < distance_m(31.78, 119.95, 32.04, 118.78) < 125_000
    assert distance_m(31.78, 119.95, 31.78, 119.95) == 0


@given(lat, lon, lat, lon)
def test_scalar_and_vector_forms_agree_and_are_symmetric(
    a: float, b: float, c: float, d: float
) -> None:
    s = distance_m(a, b, c, d)
    v = float(haversine_m(np.array([a]), np.array([b]), np.array([c]), np.array([d]))[0])
    assert math.isclose(s, v, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(s, distance_m(c, d, a, b), rel_tol=1e-9, abs_tol=1e-6)
    assert 0 <= s <= math.pi * EARTH_RADIUS_M + 1
