"""What the benchmarks share: a freshly migrated database to measure against."""

from __future__ import annotations

from sqlalchemy import Engine, text

from newsletter.db import make_engine, upgrade


def fresh_engine(url: str) -> Engine:
    """A migrated engine for *url*; a PostgreSQL database is wiped first (schema ``public``
    dropped and recreated). The caller disposes of it."""
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    return engine
