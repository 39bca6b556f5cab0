"""The event store: one small interface, three backends (memory, SQLite, PostgreSQL)."""
