"""Alembic environment: runs on the engine handed over by ``newsletter.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from newsletter.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only reached when misused
    raise RuntimeError("run migrations through `newsletter db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
