"""Storage: the SQLAlchemy schema, the graph codec, and `LocalAttrDB` (no torch here)."""

from locattr.storage.codec import GraphCodecError, ValueDtype, decode_graph, encode_graph
from locattr.storage.db import LocalAttrDB
from locattr.storage.engine import DatabaseError, create_async_engine_for, resolve_target
from locattr.storage.keys import ComponentKey, ComponentKeyError
from locattr.storage.queries import CursorError, QueryError
from locattr.storage.records import (
    Cofiring,
    CofiringPartner,
    ComponentMatch,
    ComponentStats,
    ComponentSummary,
    EdgeHit,
    EdgeSearchPage,
    Partner,
    Partners,
    PromptInfo,
    PromptRecord,
    SearchHit,
    SearchPage,
    identity_for_dataset,
    identity_for_tokens,
)

__all__ = [
    "Cofiring",
    "CofiringPartner",
    "ComponentKey",
    "ComponentKeyError",
    "ComponentMatch",
    "ComponentStats",
    "ComponentSummary",
    "CursorError",
    "EdgeHit",
    "EdgeSearchPage",
    "Partner",
    "Partners",
    "DatabaseError",
    "GraphCodecError",
    "LocalAttrDB",
    "PromptInfo",
    "PromptRecord",
    "QueryError",
    "SearchHit",
    "SearchPage",
    "ValueDtype",
    "create_async_engine_for",
    "decode_graph",
    "encode_graph",
    "identity_for_dataset",
    "identity_for_tokens",
    "resolve_target",
]
