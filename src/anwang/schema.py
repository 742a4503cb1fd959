"""Imports every module that defines tables, so that ``Base.metadata`` is complete.

Alembic's environment and the test fixtures import this; domains add their models here.
"""

from anwang.auth import models as auth_models
from anwang.core import audit, db

__all__ = ["audit", "auth_models", "db"]
