"""The Alembic migrations and the SQLModel tables describe the same schema, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from server.migrate import alembic_config, current_revision, head_revision, migrate
from server.records import metadata


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrated_database_matches_the_models(engine: Engine) -> None:
    """Autogenerate finds nothing to do after the migrations ran (a model change needs a migration)."""
    assert schema_diff(engine) == []
    assert current_revision(engine) == head_revision()


def test_migrating_again_is_a_no_op(engine: Engine) -> None:
    assert migrate(engine) == head_revision()
    assert schema_diff(engine) == []


def test_downgrade_to_empty_and_back(engine: Engine) -> None:
    """The initial migration can be undone and redone cleanly."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert schema_diff(engine) == []
