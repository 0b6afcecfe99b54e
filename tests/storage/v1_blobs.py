"""Format-1 graph blobs, as locattr wrote them before format 2, for testing that they still
decode: a writer of the format (from its specification in `locattr.storage.codec`) and two
blobs written by the format-1 encoder itself."""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray

from locattr.graph import Graph
from locattr.storage.codec import ValueDtype
from tests.graphs import THREE_EDGE_GRAPH


def encode_v1(graph: Graph, value_dtype: ValueDtype = ValueDtype.FLOAT32) -> bytes:
    """`graph` as a format-1 blob: one zstd frame of every column (integers delta-encoded),
    byte-shuffled, back to back."""
    values = graph.edge_value.astype(value_dtype.numpy)
    columns = [
        _shuffle(_delta(graph.node_layer)),
        _shuffle(_delta(graph.node_pos)),
        _shuffle(_delta(graph.node_component)),
        _shuffle(graph.node_ci),
        _shuffle(_delta(graph.edge_target)),
        _shuffle(_delta(graph.edge_source)),
        _shuffle(values),
    ]
    header = orjson.dumps(
        {"layers": list(graph.layers), "n_nodes": graph.n_nodes, "n_edges": graph.n_edges}
    )
    body = zstandard.ZstdCompressor(level=3).compress(b"".join(columns))
    return struct.pack("<4sBBHI", b"LAGR", 1, int(value_dtype), 0, len(header)) + header + body


def _delta(column: NDArray[Any]) -> NDArray[Any]:
    return np.diff(column, prepend=column.dtype.type(0)).astype(column.dtype)


def _shuffle(column: NDArray[Any]) -> bytes:
    little = column.astype(column.dtype.newbyteorder("<"))
    return little.view(np.uint8).reshape(-1, column.dtype.itemsize).T.tobytes()


WRITTEN_BY_V1 = {
    ValueDtype.FLOAT32: base64.b64decode(
        "TEFHUgEAAABZAAAAeyJsYXllcnMiOlsiaC4wLm1scC5jX2ZjIiwiaC4wLm1scC5kb3duX3Byb2oiLCJoLjEu"
        "YXR0bi5vX3Byb2oiXSwibl9ub2RlcyI6NCwibl9lZGdlcyI6M30otS/9IFylAQDwAAABAQADAAL9AAAA/0AA"
        "gD8/Pz4CAf8CAIBAvz4/CQBAgG4AUmFMZRiMsDMMSqQMCIAW"
    ),
    ValueDtype.FLOAT16: base64.b64decode(
        "TEFHUgEBAABZAAAAeyJsYXllcnMiOlsiaC4wLm1scC5jX2ZjIiwiaC4wLm1scC5kb3duX3Byb2oiLCJoLjEu"
        "YXR0bi5vX3Byb2oiXSwibl9ub2RlcyI6NCwibl9lZGdlcyI6M30otS/9IFaNAQDoAAABAQADAAL9AAAA/0AA"
        "gD8/Pz4CAf8CAAC4NDoIALoBSIUxlWEwws4wKJEyIABa"
    ),
}
"""Written by locattr's format-1 encoder from `WRITTEN_GRAPH` (canonical order)."""

WRITTEN_GRAPH = THREE_EDGE_GRAPH.canonical()
