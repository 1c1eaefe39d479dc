"""Alembic environment: migrations run on the synchronous driver of the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from habitue.db import make_sync_engine
from habitue.models import Base
from habitue.settings import get_settings

config = context.config
target_metadata = Base.metadata


def run() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_sync_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
