"""The graph blob: a versioned, columnar, zstd-compressed encoding of a `Graph`.

Layout (little-endian)::

    b"LAGR" | u8 format version | u8 value dtype (0 = float32, 1 = float16) | u16 0
    | u32 header length | header (JSON: layers, n_nodes, n_edges) | zstd frame of the body

The body is the graph's columns back to back. Integer columns are delta-encoded (sorted node
and edge tables then hold mostly tiny deltas) and every column is byte-shuffled (byte 0 of all
values, then byte 1, ...), so that zstd sees the low-entropy high bytes together. Encoding and
decoding are whole-array numpy operations; decoding reproduces the input arrays exactly
(float16 values widen back to float32).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray

from locattr.errors import LocattrError
from locattr.graph import Graph

MAGIC = b"LAGR"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sBBHI")


class ValueDtype(IntEnum):
    FLOAT32 = 0
    FLOAT16 = 1

    @property
    def numpy(self) -> type[np.floating]:
        return np.float32 if self is ValueDtype.FLOAT32 else np.float16


class GraphCodecError(LocattrError):
    """A graph blob that cannot be decoded (corrupt, truncated or from a newer locattr)."""


_THREADED_BYTES = 8 << 20


def encode_graph(
    graph: Graph, *, value_dtype: ValueDtype = ValueDtype.FLOAT32, level: int = 3
) -> bytes:
    """Encode `graph` (in its own node and edge order) into a blob."""
    values = graph.edge_value
    if value_dtype is ValueDtype.FLOAT16:
        finite = np.isfinite(values)
        if np.any(np.abs(values[finite]) > np.finfo(np.float16).max):
            raise GraphCodecError(
                "edge values exceed the float16 range; store this graph as float32"
            )
        values = values.astype(np.float16)
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
    raw = b"".join(columns)
    # Real graphs are 10-100 MB raw; zstd's worker threads then cut encoding several-fold
    # (and release the GIL for the writer's other work). Small bodies stay single-threaded.
    threads = -1 if len(raw) >= _THREADED_BYTES else 0
    body = zstandard.ZstdCompressor(level=level, threads=threads).compress(raw)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, int(value_dtype), 0, len(header))
    return prefix + header + body


def decode_graph(blob: bytes) -> Graph:
    """Decode a blob written by `encode_graph`; raises `GraphCodecError` if it is not one."""
    if len(blob) < _PREFIX.size:
        raise GraphCodecError(f"graph blob truncated ({len(blob)} bytes)")
    magic, version, dtype_code, _, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise GraphCodecError("not a locattr graph blob (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise GraphCodecError(
            f"graph blob format {version} is not supported by this locattr (reads format "
            f"{FORMAT_VERSION}); upgrade locattr"
        )
    try:
        value_dtype = ValueDtype(dtype_code)
        header = orjson.loads(blob[_PREFIX.size : _PREFIX.size + header_len])
        layers, n_nodes, n_edges = header["layers"], header["n_nodes"], header["n_edges"]
        body = zstandard.ZstdDecompressor().decompress(
            memoryview(blob)[_PREFIX.size + header_len :]
        )
    except (ValueError, KeyError, TypeError, zstandard.ZstdError) as error:
        raise GraphCodecError(f"corrupt graph blob: {error}") from error
    reader = _ColumnReader(body)
    node_layer = _undelta(reader.take(np.int16, n_nodes))
    node_pos = _undelta(reader.take(np.int32, n_nodes))
    node_component = _undelta(reader.take(np.int32, n_nodes))
    node_ci = reader.take(np.float32, n_nodes)
    edge_target = _undelta(reader.take(np.int32, n_edges))
    edge_source = _undelta(reader.take(np.int32, n_edges))
    edge_value = reader.take(value_dtype.numpy, n_edges)
    reader.expect_end()
    try:
        return Graph(
            layers=tuple(layers),
            node_layer=node_layer,
            node_pos=node_pos,
            node_component=node_component,
            node_ci=node_ci,
            edge_source=edge_source,
            edge_target=edge_target,
            edge_value=edge_value.astype(np.float32, copy=False),
        )
    except AssertionError as error:
        raise GraphCodecError(f"corrupt graph blob: {error}") from error


def _delta(column: NDArray[Any]) -> NDArray[Any]:
    """First differences, wrapping in the column's own width (exactly invertible)."""
    out = np.empty_like(column)
    if len(column):
        out[0] = column[0]
        np.subtract(column[1:], column[:-1], out=out[1:])
    return out


def _undelta(column: NDArray[Any]) -> NDArray[Any]:
    return np.cumsum(column, dtype=column.dtype, out=column)


def _shuffle(column: NDArray[Any]) -> bytes:
    width = column.dtype.itemsize
    little = np.ascontiguousarray(column).astype(column.dtype.newbyteorder("<"), copy=False)
    as_bytes = little.view(np.uint8).reshape(-1, width)
    planes = np.empty((width, len(column)), dtype=np.uint8)
    for byte in range(width):  # one strided pass per byte beats a generic transpose ~3x
        planes[byte] = as_bytes[:, byte]
    return planes.tobytes()


class _ColumnReader:
    """Cuts the decompressed body back into typed, un-shuffled columns."""

    def __init__(self, body: bytes) -> None:
        self._body = np.frombuffer(body, dtype=np.uint8)
        self._offset = 0

    def take(self, dtype: type[np.generic], count: int) -> NDArray[Any]:
        width = np.dtype(dtype).itemsize
        end = self._offset + width * count
        if end > len(self._body):
            raise GraphCodecError("corrupt graph blob: body shorter than its header says")
        planes = self._body[self._offset : end].reshape(width, count)
        self._offset = end
        interleaved = np.empty((count, width), dtype=np.uint8)
        for byte in range(width):
            interleaved[:, byte] = planes[byte]
        return interleaved.view(np.dtype(dtype).newbyteorder("<"))[:, 0]

    def expect_end(self) -> None:
        if self._offset != len(self._body):
            raise GraphCodecError("corrupt graph blob: body longer than its header says")
