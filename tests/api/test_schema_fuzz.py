"""Schemathesis drives every endpoint from /openapi.json over real HTTP: no 5xx, valid bodies,
and every request the schema calls well formed is answered (positive-data acceptance)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from locattr.storage import ComponentKey, ComponentKeyError, queries
from locattr.storage.keys import split_keys


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # Every check runs; the schema declares the patterns of cursors and component keys, so a
    # well-formed value is accepted (a key or cursor naming nothing here is a 404 or an empty
    # page, not a 422). The one exception is a request whose parameters are each well formed
    # but disagree, a documented 422 that OpenAPI cannot state (it has no constraint between
    # parameters): a cursor of another order than `rank` or `sort` asks for, a key both
    # searched and excluded, or `same_position` with mode `any`.
    if parameters_disagree(case.operation.path, case.query or {}):
        case.call_and_validate(excluded_checks=[positive_data_acceptance])
    else:
        case.call_and_validate()


SEARCH_TAGS = {rank: queries.SearchCursor(0.0, 0).encode(rank)[0] for rank in queries.RANKS}


def parameters_disagree(path: str, query: dict[str, Any]) -> bool:
    """Whether each parameter is well formed but together they are refused (values drawn as
    malformed, in negative mode, come as any JSON: a list, `null`)."""
    cursor = str(query.get("cursor") or "")
    match path:
        case "/api/search":
            tag = SEARCH_TAGS.get(str(query.get("rank", "specificity")))
            same_position = str(query.get("same_position", "false")).lower() == "true"
            searched = keys(query.get("components", ""))
            return (
                (bool(cursor) and cursor[0] != tag)
                or (same_position and query.get("mode") == "any")
                or bool(searched & keys(query.get("exclude", "")))
            )
        case "/api/components":
            tag = queries.COMPONENT_SORT_TAGS.get(str(query.get("sort", "prompt_count")))
            return bool(cursor) and cursor[0] != tag
        case _:
            return False


def keys(text: object) -> set[object]:
    """The keys of a list as the server compares them, and as written (either may collide)."""
    found: set[object] = set()
    for key in split_keys(str(text)):
        found.add(key)
        with contextlib.suppress(ComponentKeyError):  # a malformed key collides with none
            found.add(ComponentKey.parse(key))
    return found
