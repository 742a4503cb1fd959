"""Alembic migrations, run by ``anwang db upgrade`` on SQLite and PostgreSQL alike."""
