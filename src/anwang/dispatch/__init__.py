"""Dispatch (CAD) and response circles: incidents, units, positions, recommendations,
instructions, response times; posts, demand layers, coverage and post siting.

Files by role:

* ``models.py`` — tables; ``schemas.py`` — API shapes; ``events.py`` — published events;
* ``config.py`` — the incident taxonomy and timing rules (``<data_dir>/dispatch.json``);
* ``service.py`` — units, positions, incidents, recommendations, assignment, timeline;
* ``instructions.py`` — instructions (指令), acknowledgement and escalation;
* ``stats.py`` — response times against the 1/3/5-minute targets;
* ``posts.py`` — posts (快反点位, 巡防重点部位) and demand layers;
* ``siting.py`` — coverage shares, isochrones and re-siting on the road network (the
  platform side of the pure :mod:`anwang.coverage` engine);
* ``recommend.py`` — the pure ranking and held-coverage engine over a road graph;
* ``api.py``, ``coverage_api.py``, ``pages.py``, ``cli.py``, ``handlers.py``, ``demo.py``.
"""
