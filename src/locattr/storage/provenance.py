"""Provenance: the settings every graph in a database was computed under, and the rule for
when prompts from two builds may share one database.

`locattr-generate` (extending a database) and `locattr merge` (joining shards) both ask
`first_difference`, so a shard that generate would refuse cannot be merged in either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from locattr.storage.codec import ValueDtype, ValueEncoding, parse_value_encoding
from locattr.storage.engine import DatabaseError

VALUE_PRECISION_KEY = "value_precision"
"""Meta key: how the database's graphs store edge values, as `codec.value_encoding_label` writes
it (an absolute step such as 1e-06, or "float32" / "float16")."""

FIXED_KEYS = (
    "run",
    "config_digest",
    "ci_threshold",
    "attr_threshold",
    "n_ctx",
    "n_blocks",
    "context_windows",
    "inputs",
    "outputs",
    "output_prob_threshold",
    VALUE_PRECISION_KEY,
    "mode",
)
"""Meta keys a database is built under once: they must agree before prompts from two builds
may share one database (`n_ctx` and `context_windows` decide which windows the prompts are;
`n_blocks` which layers the graphs hold, None for all; `value_precision` is a statement about
every stored graph, as `attr_threshold` is; `mode` is the graph definition)."""

IMPLICIT_PROVENANCE: Mapping[str, object] = {
    "inputs": False,
    "outputs": False,
    "output_prob_threshold": None,
    VALUE_PRECISION_KEY: "float32",
    "n_blocks": None,
    "mode": "ci_masked",
}
"""Keys builds record since graphs may hold `wte` and `output` nodes, edge values at a stated
precision, only the first blocks' layers, or another graph mode, with the values that older
builds held without saying so (they stored no such nodes, float32 values, every layer, and the
original's CI-masked graphs)."""


def recorded_value_encoding(meta: Mapping[str, Any]) -> ValueEncoding:
    """How prompts written to a database with this meta store edge values: as its build
    recorded (`VALUE_PRECISION_KEY`), float32 (lossless) where it records nothing."""
    label = meta.get(VALUE_PRECISION_KEY)
    if label is None:
        return ValueDtype.FLOAT32
    try:
        return parse_value_encoding(label)
    except ValueError as error:
        raise DatabaseError(f"meta {VALUE_PRECISION_KEY!r} is unusable: {error}") from None


def with_implicit_provenance(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`meta` with `IMPLICIT_PROVENANCE` filled in where a build wrote it (`run` is set), so an
    older database compares as what it is rather than matching any setting."""
    return {**IMPLICIT_PROVENANCE, **meta} if "run" in meta else dict(meta)


@dataclass(frozen=True)
class Difference:
    """A fixed key whose value differs between an existing database and another build."""

    key: str
    existing: object
    other: object


def first_difference(existing: Mapping[str, Any], other: Mapping[str, Any]) -> Difference | None:
    """The first of `FIXED_KEYS` (in their order) that both metas record with different values,
    after filling in implicit values; None when the two builds may share a database. A key one
    side does not record (an empty database, a build older than the key) constrains nothing."""
    a, b = with_implicit_provenance(existing), with_implicit_provenance(other)
    for key in FIXED_KEYS:
        if key in a and key in b and a[key] != b[key]:
            return Difference(key, a[key], b[key])
    return None
