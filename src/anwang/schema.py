"""Imports every module that defines tables, so that ``Base.metadata`` is complete.

Alembic's environment and the test fixtures import this; domains add their models here.
"""

from anwang.alerts import models as alert_models
from anwang.auth import models as auth_models
from anwang.checkpoints import models as checkpoint_models
from anwang.communities import models as community_models  # noqa: F401
from anwang.core import audit, db
from anwang.dispatch import models as dispatch_models  # noqa: F401
from anwang.watchlist import models as watchlist_models

__all__ = [
    "alert_models", "audit", "auth_models", "checkpoint_models", "db", "watchlist_models",
]
