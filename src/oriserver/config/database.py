"""Database URLs: which backend, where, and how to show them without secrets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Dialect = Literal["sqlite", "postgresql"]

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed ORI_DATABASE_URL; ``url`` is what the drivers receive."""

    dialect: Dialect
    url: str
    sqlite_path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise ValueError("must look like sqlite:///path/to/file.db or postgresql://host/db")
        scheme = scheme.lower()
        if scheme == "sqlite":
            path = rest[1:] if rest.startswith("/") else ""
            if not path or path == ":memory:":
                raise ValueError("a SQLite URL needs a file path, as in sqlite:///oriserver.db")
            return cls("sqlite", f"sqlite:///{path}", Path(path))
        if scheme in _POSTGRES_SCHEMES:
            return cls("postgresql", "postgresql://" + rest)
        raise ValueError("only sqlite:/// and postgresql:// URLs are supported")

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy (used by Alembic), naming the psycopg 3 driver."""
        if self.dialect == "postgresql":
            return "postgresql+psycopg://" + self.url.removeprefix("postgresql://")
        return self.url

    def redacted(self) -> str:
        """The URL with any password replaced, safe for logs."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
