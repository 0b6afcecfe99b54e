"""The API on each backend, its read-only guarantee, and refusing to start on a bad database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, text

from locattr import LocalAttrDB
from locattr.api.database import Database
from locattr.api.settings import Settings
from locattr.errors import LocattrError
from locattr.graph import Graph
from locattr.storage import PromptRecord, resolve_target
from locattr.storage.engine import create_sync_engine
from tests.api.conftest import A, B, fill
from tests.api.server import running_server


def test_search_and_graph_on_each_backend(db_url: str) -> None:
    with LocalAttrDB(db_url) as db:
        fill(db)
    with running_server(Settings(db=db_url)) as url, httpx.Client(base_url=url) as client:
        found = client.get("/api/search", params={"components": f"{A},{B}"}).json()
        assert [r["id"] for r in found["results"]] == [1, 2] and found["count"] == 2
        assert found["results"][0]["matches"][A]["positions"] == [0, 1]
        graph = client.get("/api/prompt/1", params={"top_k": 2}).json()
        assert [e["value"] for e in graph["edges"]] == [0.75, -0.5]
        assert client.get("/api/prompt/42").status_code == 404


def test_the_server_cannot_write(db_url: str) -> None:
    with LocalAttrDB(db_url) as db:
        fill(db)
    database = Database.open(db_url, timeout_s=5)

    def delete(connection: Connection) -> None:
        connection.execute(text("DELETE FROM component_activations"))
        connection.commit()

    async def try_to_delete() -> str:
        try:
            await database.run(delete)  # every endpoint's reads go through here
            return ""
        except Exception as error:  # the driver's own read-only refusal
            return str(error)
        finally:
            await database.close()

    assert "read" in asyncio.run(try_to_delete()).lower()
    with LocalAttrDB(db_url, readonly=True) as db:
        assert db.find_prompts_with_components([A]).total == 2


def test_refuses_to_start_without_a_usable_database(tmp_path: Path) -> None:
    with pytest.raises(LocattrError, match="LOCATTR_DB"):
        Database.open("", timeout_s=5)
    with pytest.raises(LocattrError, match="no database at"):
        Database.open(str(tmp_path / "missing.db"), timeout_s=5)
    old = tmp_path / "old.db"
    LocalAttrDB(old).close()
    engine = create_sync_engine(resolve_target(old))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    engine.dispose()
    with pytest.raises(LocattrError, match="locattr db upgrade"):
        Database.open(str(old), timeout_s=5)


def test_locattr_serve_refuses_a_bad_database_in_one_line(tmp_path: Path) -> None:
    locattr = str(Path(sys.executable).with_name("locattr"))
    result = subprocess.run(
        [locattr, "serve", "--db", str(tmp_path / "missing.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no database at" in result.stderr and "Traceback" not in result.stderr


def test_a_query_past_the_time_limit_is_a_503(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    with LocalAttrDB(path) as db:
        db.register_layers({"h.0.mlp.c_fc": 4})
        db.add_prompts(
            [
                PromptRecord(
                    f"p{i}", [i], ["x"], Graph.from_records([("h.0.mlp.c_fc", 0, 1, 0.5)], [])
                )
                for i in range(3000)
            ]
        )
    with running_server(Settings(db=path, query_timeout_s=1e-6)) as url:
        response = httpx.get(f"{url}/api/search", params={"components": "h.0.mlp.c_fc:1"})
    assert response.status_code == 503
    assert response.json()["error"] == "query_timeout"
    with running_server(Settings(db=path)) as url:
        response = httpx.get(f"{url}/api/search", params={"components": "h.0.mlp.c_fc:1"})
    assert response.status_code == 200 and response.json()["count"] == 3000
