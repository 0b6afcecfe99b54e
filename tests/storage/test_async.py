"""The async engine the API uses runs the same statements, read-only, on both backends."""

import asyncio

import pytest
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.graph import Graph
from locattr.storage import PromptRecord, create_async_engine_for, queries, resolve_target


def test_async_engine_reads_what_the_writer_wrote(db_url: str) -> None:
    with LocalAttrDB(db_url) as db:
        db.register_layers({"h.0.mlp.c_fc": 4})
        db.add_prompt(
            PromptRecord("p", [1], ["a"], Graph.from_records([("h.0.mlp.c_fc", 0, 2, 0.5)], []))
        )

    async def scenario() -> tuple[list[tuple[int, float, int]], str]:
        engine = create_async_engine_for(resolve_target(db_url))
        try:
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        queries.search_prompts(
                            queries.MatchSpec((2,), require_all=True),
                            queries.Scoring.by_max_ci(1),
                            limit=10,
                            after=None,
                        )
                    )
                ).all()
            try:
                async with engine.begin() as connection:
                    await connection.execute(text("DELETE FROM prompts"))
                error = ""
            except Exception as exc:  # the driver's own read-only error
                error = str(exc)
            return [tuple(r) for r in rows], error
        finally:
            await engine.dispose()

    rows, error = asyncio.run(scenario())
    assert rows == [(1, pytest.approx(0.5), 1)]
    assert "read" in error.lower() and "only" in error.lower()
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.get_prompt_count() == 1
