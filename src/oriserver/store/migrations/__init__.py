"""Alembic migrations for the event store (SQLite and PostgreSQL)."""
