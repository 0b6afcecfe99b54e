"""The graph blob: a versioned, columnar, zstd-compressed encoding of a `Graph`.

Layout (little-endian)::

    b"LAGR" | u8 format version | u8 value code (0 = float32, 1 = float16, 2 = quantized) | u16 0
    | u32 header length | header (JSON) | body

Format 4 (written): the header holds ``layers``, ``n_nodes``, ``n_edges`` and ``columns``, one
``[encoding, stored dtype, frame bytes]`` per column in the order of `COLUMNS`, with value
code 2 ``value_step``, and ``ci_step`` when node CIs are quantized; the body is one zstd
frame per column (with its content size and a checksum), back to back. Encodings:

- ``plain``: the values, byte-shuffled (byte 0 of all values, then byte 1, ...) so that zstd
  sees the low-entropy high bytes together;
- ``delta``: first differences, wrapping in the stored dtype, byte-shuffled (sorted node and
  edge tables then hold mostly tiny deltas);
- ``runs`` (``edge_target`` only, when it is non-decreasing as in canonical order): the number
  of edges into each node, in node order, byte-shuffled;
- ``quantized`` (``edge_value`` with value code 2, and ``node_ci``): each value as the integer
  ``q = round(value / step)``, zigzag-coded (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...),
  byte-shuffled; it decodes to the float32 nearest to ``q * step``. The step is
  ``value_step`` for edge values and ``ci_step`` (`index_rows.CI_UNIT`, the precision the
  index keeps CI at) for node CIs. A float32 mantissa spends bits below any stated precision,
  and those bits do not compress; ``q`` holds only what the precision keeps.

Integer columns are stored in the narrowest of uint8, uint16 and their own dtype that holds
them (``quantized``: of uint8, uint16, uint32 and uint64): fewer bytes to inflate and to
un-shuffle. Separate frames let a large graph's columns decode on two threads at once (zstd
and numpy release the GIL).

Format 3 (still read) is format 4 with node CIs always ``plain``; format 2 is format 3 without
value code 2. Format 1 (still read): the header holds
``layers``, ``n_nodes`` and ``n_edges``; the body is one zstd frame of every column back to
back, integers delta-encoded, all byte-shuffled.

Decoding is whole-array numpy work. It reproduces the input arrays exactly, except the edge
values under a lossy `ValueEncoding`: float16 values widen back to float32, quantized ones are
within half a step of the input (plus the float32 rounding of the result), and so are the node
CIs of a quantized blob; `stored_edge_values` says exactly what edge values decode to. A damaged
blob raises `GraphCodecError`, never anything else.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray

from locattr.errors import LocattrError
from locattr.graph import Graph
from locattr.storage.index_rows import CI_UNIT

MAGIC = b"LAGR"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
_PREFIX = struct.Struct("<4sBBHI")


class ValueDtype(IntEnum):
    """Edge values stored as floats: float32 (lossless) or float16."""

    FLOAT32 = 0
    FLOAT16 = 1

    @property
    def numpy(self) -> type[np.floating]:
        return np.float32 if self is ValueDtype.FLOAT32 else np.float16


@dataclass(frozen=True)
class Quantized:
    """Edge values stored at the absolute precision `step`: each as the integer nearest to
    value / step, decoding to the float32 nearest to that integer times `step` (within
    step / 2 of the value, plus half a float32 ulp of the result).

    A graph with a value that is not finite, or with |value| / step of 2**53 or more, is stored
    as float32 instead: exactly, so every value is still within the precision.
    """

    step: float

    def __post_init__(self) -> None:
        real = isinstance(self.step, numbers.Real) and not isinstance(self.step, bool)
        if not (real and math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"a value precision must be a finite step > 0, not {self.step!r}")
        object.__setattr__(self, "step", float(self.step))


ValueEncoding = ValueDtype | Quantized
"""How a blob stores its edge values."""

DEFAULT_VALUE_ENCODING: ValueEncoding = Quantized(1e-6)
"""What `locattr-generate` stores: the original system's precision (it rounded edge values to
6 decimals), at 2/3 to 3/4 of float32's bytes on attribution graphs."""


def value_encoding_label(encoding: ValueEncoding) -> str | float:
    """How `encoding` is written in meta and on the command line: ``"float32"``, ``"float16"``
    or the step (a number)."""
    match encoding:
        case Quantized(step=step):
            return step
        case ValueDtype():
            return encoding.name.lower()


def parse_value_encoding(label: str | float) -> ValueEncoding:
    """The encoding `value_encoding_label` writes as `label` (a step may also be given as text,
    ``"1e-6"``); raises ValueError for anything else."""
    if isinstance(label, str) and label.lower() in ("float32", "float16"):
        return ValueDtype[label.upper()]
    if isinstance(label, bool) or not isinstance(label, str | numbers.Real):
        raise ValueError(f"not a value precision: {label!r}")
    try:
        step = float(label)
    except ValueError:
        raise ValueError(
            f"not a value precision: {label!r} (expected float32, float16 or a step such as 1e-6)"
        ) from None
    return Quantized(step)


class GraphCodecError(LocattrError):
    """A graph blob that cannot be decoded (corrupt, truncated or from a newer locattr)."""


COLUMNS: dict[str, type[np.generic]] = {
    "node_layer": np.int16,
    "node_pos": np.int32,
    "node_component": np.int32,
    "node_ci": np.float32,
    "edge_target": np.int32,
    "edge_source": np.int32,
    "edge_value": np.float32,
}
"""Format 2's columns in blob order, with the dtype each decodes to."""

_PLAIN, _DELTA, _RUNS, _QUANTIZED = "plain", "delta", "runs", "quantized"
_NARROW = (np.dtype("<u1"), np.dtype("<u2"))
_UNSIGNED = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))
_QUANTIZED_CODE = 2
"""The prefix's value code for quantized edge values (after `ValueDtype`'s codes)."""
_MAX_STEPS = 2.0**53
"""Values at or beyond this many steps from 0 are stored as float32 (a float64 holds every
integer below it exactly, so q * step is computed without loss)."""
_THREADED_BYTES = 8 << 20
_PARALLEL_BYTES = 1 << 20  # smaller value columns decode faster than a thread hand-off pays
_decode_pool: ThreadPoolExecutor | None = None


def encode_graph(
    graph: Graph,
    *,
    value_encoding: ValueEncoding = ValueDtype.FLOAT32,
    level: int = 1,
) -> bytes:
    """Encode `graph` (in its own node and edge order) into a format-3 blob, edge values as
    `value_encoding` asks (lossless float32 unless told otherwise).

    Level 1 is the default because on byte-shuffled attribution columns it compresses as well
    as level 3 and the frames inflate about twice as fast.
    """
    values = _value_column(graph.edge_value, value_encoding)
    ci = _ci_column(graph.node_ci, value_encoding)
    target = graph.edge_target
    if graph.n_edges == 0 or bool(np.all(target[1:] >= target[:-1])):
        target_column = (_RUNS, np.bincount(target, minlength=graph.n_nodes).astype(np.int32))
        assert len(target_column[1]) == graph.n_nodes, "edge_target beyond the node table"
    else:
        target_column = (_DELTA, _narrowest(target))
    columns: list[tuple[str, NDArray[Any]]] = [
        (_DELTA, _narrowest(graph.node_layer)),
        (_DELTA, _narrowest(graph.node_pos)),
        (_DELTA, _narrowest(graph.node_component)),
        (ci.encoding, ci.column),
        target_column,
        (_DELTA, _narrowest(graph.edge_source)),
        (values.encoding, values.column),
    ]
    frames, specs = [], []
    for encoding, column in columns:
        raw = _shuffle(_delta(column) if encoding == _DELTA else column)
        # Real graphs are 10-100 MB raw; zstd's worker threads then cut encoding several-fold
        # (and release the GIL for the writer's other work). Small columns stay single-threaded.
        threads = -1 if len(raw) >= _THREADED_BYTES else 0
        compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
        frames.append(_compress_planes(compressor, raw, np.dtype(column.dtype).itemsize))
        specs.append([encoding, np.dtype(column.dtype).newbyteorder("<").str, len(frames[-1])])
    header: dict[str, object] = {
        "layers": list(graph.layers),
        "n_nodes": graph.n_nodes,
        "n_edges": graph.n_edges,
        "columns": specs,
    }
    if values.step is not None:
        header["value_step"] = values.step
    if ci.step is not None:
        header["ci_step"] = ci.step
    encoded_header = orjson.dumps(header)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, values.code, 0, len(encoded_header))
    return b"".join([prefix, encoded_header, *frames])


def _compress_planes(compressor: zstandard.ZstdCompressor, raw: bytes, n_planes: int) -> bytes:
    """One zstd frame of a byte-shuffled column, each byte plane in blocks of its own.

    zstd codes the literals of a block with one Huffman table; a plane of high bytes (mostly
    small) and one of low bytes (near random) in the same block share a table that fits
    neither. A block boundary between planes gives each its own: 6 % fewer bytes on quantized
    edge values, 7 % on node CIs, and the frame decodes as any other.
    """
    plane = len(raw) // n_planes
    stream = compressor.compressobj(size=len(raw))
    parts = []
    for start in range(0, len(raw), plane or 1):
        parts.append(stream.compress(raw[start : start + plane]))
        parts.append(stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    parts.append(stream.flush())
    return b"".join(parts)


def stored_edge_values(
    values: NDArray[np.float32], value_encoding: ValueEncoding
) -> NDArray[np.float32]:
    """The edge values a blob encoded with `value_encoding` decodes to: what everything derived
    from a graph at write time (corpus attributions, the edge index) must be computed from, so
    that rebuilding it from the stored blobs gives the very same numbers. (The same code as
    `encode_graph` and `decode_graph`, so the two cannot disagree.)"""
    column = _value_column(values, value_encoding)
    if column.step is not None:
        return _dequantized(column.column, column.step)
    return column.column.astype(np.float32, copy=False)


def stored_node_ci(ci: NDArray[np.float32], value_encoding: ValueEncoding) -> NDArray[np.float32]:
    """The node CIs a blob encoded with `value_encoding` decodes to: what the index rows of its
    prompt are computed from (as `stored_edge_values` for the corpus tables)."""
    column = _ci_column(ci, value_encoding)
    if column.step is not None:
        return _dequantized(column.column, column.step)
    return ci


@dataclass(frozen=True)
class _ValueColumn:
    """The edge-value column as a blob stores it: prefix value code, encoding, the array
    (before shuffling) and the quantization step (value code 2 only)."""

    code: int
    encoding: str
    column: NDArray[Any]
    step: float | None = None


def _value_column(values: NDArray[np.float32], encoding: ValueEncoding) -> _ValueColumn:
    match encoding:
        case ValueDtype.FLOAT32:
            return _ValueColumn(int(ValueDtype.FLOAT32), _PLAIN, values)
        case ValueDtype.FLOAT16:
            finite = np.isfinite(values)
            if np.any(np.abs(values[finite]) > np.finfo(np.float16).max):
                raise GraphCodecError(
                    "edge values exceed the float16 range; store this graph as float32"
                )
            return _ValueColumn(int(ValueDtype.FLOAT16), _PLAIN, values.astype(np.float16))
        case Quantized(step=step):
            quantized = _quantized(values, step)
            if quantized is None:
                return _ValueColumn(int(ValueDtype.FLOAT32), _PLAIN, values)
            return _ValueColumn(_QUANTIZED_CODE, _QUANTIZED, quantized, step)


def _ci_column(ci: NDArray[np.float32], encoding: ValueEncoding) -> _ValueColumn:
    """Node CIs at `CI_UNIT` when the encoding quantizes (lossy blobs are lossy in both, at the
    precisions the README states), whatever became of the edge values; float32 otherwise, and
    when a CI is not finite. (The value code is the edge values'.)"""
    quantized = _quantized(ci, CI_UNIT) if isinstance(encoding, Quantized) else None
    if quantized is None:
        return _ValueColumn(int(ValueDtype.FLOAT32), _PLAIN, ci)
    return _ValueColumn(_QUANTIZED_CODE, _QUANTIZED, quantized, CI_UNIT)


def _quantized(values: NDArray[np.float32], step: float) -> NDArray[Any] | None:
    """round(values / step) zigzag-coded, in the narrowest unsigned dtype that holds them; None
    when a value is not finite or lies 2**53 steps or more from 0."""
    scaled = np.divide(values, step, dtype=np.float64)
    # One pass: the maximum of |scaled| is NaN or inf when any value is, and `<` fails for both.
    if len(scaled) and not np.abs(scaled).max() < _MAX_STEPS:
        return None
    q = np.rint(scaled).astype(np.int64)
    zigzag = ((q << 1) ^ (q >> 63)).view(np.uint64)
    high = int(zigzag.max()) if len(zigzag) else 0
    narrow = next(d for d in _UNSIGNED if high <= np.iinfo(d).max)
    return zigzag.astype(narrow)


def _dequantized(stored: NDArray[Any], step: float) -> NDArray[np.float32]:
    """Zigzag-coded step counts (unsigned) back to float32 values: the float32 nearest to
    q * step, computed in float64 (exact for |q| < 2**53)."""
    low = stored & 1
    np.negative(low, out=low)  # 0 or all ones (unsigned wrap-around)
    q = stored >> 1
    q ^= low
    signed = q.view(np.dtype(f"i{q.dtype.itemsize}"))
    out = np.empty(len(signed), dtype=np.float32)
    # float64 arithmetic, cast into float32 chunk by chunk (no float64 array in memory).
    np.multiply(signed, step, out=out, dtype=np.float64, casting="unsafe")
    return out


def decode_graph(blob: bytes) -> Graph:
    """Decode a blob written by `encode_graph` (format 1, 2 or 3); raises `GraphCodecError` if
    it is not one."""
    if len(blob) < _PREFIX.size:
        raise GraphCodecError(f"graph blob truncated ({len(blob)} bytes)")
    magic, version, dtype_code, _, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise GraphCodecError("not a locattr graph blob (bad magic bytes)")
    if version not in READABLE_VERSIONS:
        raise GraphCodecError(
            f"graph blob format {version} is not supported by this locattr (reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade locattr"
        )
    body_start = _PREFIX.size + header_len
    try:
        _check(
            dtype_code in (*ValueDtype, _QUANTIZED_CODE) and (version >= 3 or dtype_code < 2),
            f"unknown value code {dtype_code}",
        )
        header = orjson.loads(blob[_PREFIX.size : body_start])
        layers, n_nodes, n_edges = header["layers"], header["n_nodes"], header["n_edges"]
        _check(
            isinstance(layers, list) and all(isinstance(name, str) for name in layers),
            "layers must be a list of names",
        )
        _check(_is_count(n_nodes) and _is_count(n_edges), "node and edge counts must be >= 0")
        if version == 1:
            value_dtype = ValueDtype(dtype_code)
            columns = _decode_v1(memoryview(blob)[body_start:], value_dtype, n_nodes, n_edges)
        else:
            steps = {}
            if dtype_code == _QUANTIZED_CODE:
                steps["edge_value"] = _step(header, "value_step")
            if "ci_step" in header and version >= 4:
                steps["node_ci"] = _step(header, "ci_step")
            columns = _decode_v2(
                blob, body_start, header["columns"], dtype_code, steps, n_nodes, n_edges
            )
    except (ValueError, KeyError, TypeError, zstandard.ZstdError) as error:
        raise GraphCodecError(f"corrupt graph blob: {error}") from error
    try:
        return Graph(layers=tuple(layers), **columns)
    except AssertionError as error:
        raise GraphCodecError(f"corrupt graph blob: {error}") from error


def _decode_v1(
    body: memoryview, value_dtype: ValueDtype, n_nodes: int, n_edges: int
) -> dict[str, NDArray[Any]]:
    reader = _ColumnReader(zstandard.ZstdDecompressor().decompress(body))
    columns = {
        "node_layer": _undelta(reader.take(np.int16, n_nodes)),
        "node_pos": _undelta(reader.take(np.int32, n_nodes)),
        "node_component": _undelta(reader.take(np.int32, n_nodes)),
        "node_ci": reader.take(np.float32, n_nodes),
        "edge_target": _undelta(reader.take(np.int32, n_edges)),
        "edge_source": _undelta(reader.take(np.int32, n_edges)),
        "edge_value": reader.take(value_dtype.numpy, n_edges).astype(np.float32, copy=False),
    }
    reader.expect_end()
    return columns


def _step(header: dict[str, Any], key: str) -> float:
    step = header[key]
    valid = isinstance(step, float | int) and not isinstance(step, bool)
    _check(valid and math.isfinite(step) and step > 0, f"bad {key} {step!r}")
    return float(step)


@dataclass(frozen=True)
class _Column:
    """One format-2/3/4 column: where its frame lies and how to turn it back into an array."""

    name: str
    encoding: str
    stored: np.dtype[Any]
    count: int
    frame: memoryview
    step: float | None
    """The quantization step of a ``quantized`` column (None for the others)."""

    def decode(self) -> NDArray[Any]:
        expected = self.count * self.stored.itemsize
        try:
            size = zstandard.frame_content_size(self.frame)
            _check(
                size == expected, f"{self.name} frame holds {size} bytes, header says {expected}"
            )
            raw = zstandard.ZstdDecompressor().decompress(self.frame, allow_extra_data=False)
        except zstandard.ZstdError as error:
            raise GraphCodecError(f"corrupt graph blob: {self.name} frame: {error}") from error
        column = _unshuffle(np.frombuffer(raw, dtype=np.uint8), self.stored)
        dtype = np.dtype(COLUMNS[self.name])
        if self.encoding == _QUANTIZED:
            assert self.step is not None
            return _dequantized(column, self.step)
        if self.encoding != _DELTA:
            return column.astype(dtype, copy=False)
        if self.stored.itemsize == dtype.itemsize:
            return _undelta(column).astype(dtype, copy=False)
        # Summing narrow deltas in the wider dtype wraps modulo its width, a multiple of the
        # narrow one's, so masking recovers the values; numpy sums int32 ~2.5x faster than
        # uint16.
        summed = np.cumsum(column, dtype=dtype)
        return np.bitwise_and(summed, (1 << (8 * self.stored.itemsize)) - 1, out=summed)


def _decode_v2(
    blob: bytes,
    body_start: int,
    specs: Any,
    value_code: int,
    steps: dict[str, float],
    n_nodes: int,
    n_edges: int,
) -> dict[str, NDArray[Any]]:
    """Format 2's, 3's and 4's columns (`steps`: the step of each column that may be
    quantized); the edge values inflate on a second thread while this one
    does the rest (when the graph is big enough for that to pay)."""
    _check(isinstance(specs, list) and len(specs) == len(COLUMNS), "wrong number of columns")
    columns: dict[str, _Column] = {}
    offset = body_start
    view = memoryview(blob)
    for name, spec in zip(COLUMNS, specs, strict=True):
        _check(isinstance(spec, list) and len(spec) == 3, f"bad {name} column entry")
        encoding, stored_name, frame_bytes = spec
        _check(isinstance(stored_name, str) and _is_count(frame_bytes), f"bad {name} column entry")
        stored = np.dtype(stored_name)
        _check(
            _storable(name, encoding, stored, value_code, quantizable=name in steps),
            f"{name} cannot be stored as {encoding!r} {stored_name!r}",
        )
        _check(offset + frame_bytes <= len(blob), f"{name} frame truncated")
        count = n_nodes if name.startswith("node_") or encoding == _RUNS else n_edges
        frame = view[offset : offset + frame_bytes]
        columns[name] = _Column(name, encoding, stored, count, frame, steps.get(name))
        offset += frame_bytes
    _check(offset == len(blob), f"{len(blob) - offset} bytes after the last column")
    value_bytes = n_edges * columns["edge_value"].stored.itemsize
    pending: Future[NDArray[Any]] | None = None
    if value_bytes >= _PARALLEL_BYTES and (os.cpu_count() or 1) > 1:
        pending = _pool().submit(columns["edge_value"].decode)
    try:
        decoded = {
            name: column.decode()
            for name, column in columns.items()
            if not (name == "edge_value" and pending is not None)
        }
    finally:
        if pending is not None:
            wait([pending])  # never leave work running past this call, even on an error
    if pending is not None:
        decoded["edge_value"] = pending.result()
    if columns["edge_target"].encoding == _RUNS:
        decoded["edge_target"] = _expand_runs(decoded["edge_target"], n_edges)
    return decoded


def _storable(
    name: str, encoding: object, stored: np.dtype[Any], value_code: int, *, quantizable: bool
) -> bool:
    """Whether format 2, 3 or 4 may hold column `name` in this encoding and stored dtype, in a
    blob with this value code (`quantizable`: the header gives the column a step)."""
    if name == "edge_value" and value_code == _QUANTIZED_CODE:
        return encoding == _QUANTIZED and stored in _UNSIGNED
    if encoding == _QUANTIZED:
        return quantizable and stored in _UNSIGNED
    native = np.dtype(ValueDtype(value_code).numpy if name == "edge_value" else COLUMNS[name])
    native = native.newbyteorder("<")
    match encoding:
        case "plain":
            return stored == native
        case "delta":
            narrower = stored in _NARROW and stored.itemsize < native.itemsize
            return native.kind == "i" and (stored == native or narrower)
        case "runs":
            return name == "edge_target" and stored == native
        case _:
            return False


def _pool() -> ThreadPoolExecutor:
    global _decode_pool
    if _decode_pool is None:
        _decode_pool = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="locattr-decode"
        )
    return _decode_pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist here; start a new pool."""
    global _decode_pool
    _decode_pool = None


if hasattr(os, "register_at_fork"):  # POSIX only; elsewhere there is no fork
    os.register_at_fork(after_in_child=_forget_pool)


def _expand_runs(counts: NDArray[np.int32], n_edges: int) -> NDArray[np.int32]:
    """A non-decreasing target column from the number of edges into each node."""
    _check(bool(np.all(counts >= 0)), "negative edge_target run")
    _check(int(counts.sum(dtype=np.int64)) == n_edges, "edge_target runs do not add up")
    return np.repeat(np.arange(len(counts), dtype=np.int32), counts)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise GraphCodecError(f"corrupt graph blob: {message}")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _narrowest(column: NDArray[Any]) -> NDArray[Any]:
    """The column as uint8 or uint16 when its values fit, else as it is."""
    if len(column) and column.min() >= 0:
        high = int(column.max())
        for dtype in _NARROW:
            if high <= np.iinfo(dtype).max and dtype.itemsize < column.dtype.itemsize:
                return column.astype(dtype)
    return column


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


def _unshuffle(planes: NDArray[np.uint8], dtype: np.dtype[Any]) -> NDArray[Any]:
    """Byte planes (least significant first) back to a writable native-order column.

    Shifting and or-ing whole planes into an unsigned integer is ~1.5x faster than writing
    each plane into every width-th byte.
    """
    width = dtype.itemsize
    rows = planes.reshape(width, -1)
    out = rows[width - 1].astype(np.dtype(f"u{width}"))
    for byte in range(width - 2, -1, -1):
        out <<= 8
        out |= rows[byte]
    return out.view(dtype.newbyteorder("="))


class _ColumnReader:
    """Cuts a format-1 body back into typed, un-shuffled columns."""

    def __init__(self, body: bytes) -> None:
        self._body = np.frombuffer(body, dtype=np.uint8)
        self._offset = 0

    def take(self, dtype: type[np.generic], count: int) -> NDArray[Any]:
        width = np.dtype(dtype).itemsize
        end = self._offset + width * count
        if end > len(self._body):
            raise GraphCodecError("corrupt graph blob: body shorter than its header says")
        planes = self._body[self._offset : end]
        self._offset = end
        return _unshuffle(planes, np.dtype(dtype))

    def expect_end(self) -> None:
        if self._offset != len(self._body):
            raise GraphCodecError("corrupt graph blob: body longer than its header says")
