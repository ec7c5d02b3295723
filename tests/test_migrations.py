"""The schema is built by migrating, and models and migrations never drift apart."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, inspect

from checkin.db import Base, make_engine
from checkin.migrate import drift, upgrade


def test_migrations_build_every_model_table(db_url: str) -> None:
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    assert drift(db_url) == []


def test_drift_check_notices_a_table_the_migrations_lack(sqlite_url: str) -> None:
    # The drift check must be able to fail: add a table the models do not know about.
    engine = make_engine(sqlite_url)
    extra = Table("not_in_models", MetaData(), Column("id", Integer, primary_key=True))
    extra.create(engine)
    engine.dispose()
    assert any(diff[0] == "remove_table" for diff in drift(sqlite_url))


def test_upgrading_twice_is_harmless(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    assert drift(sqlite_url) == []


def test_every_migration_downgrades_and_upgrades_again(db_url: str) -> None:
    from alembic import command

    from checkin.migrate import alembic_config

    command.downgrade(alembic_config(db_url), "base")
    command.upgrade(alembic_config(db_url), "head")
    assert drift(db_url) == []
