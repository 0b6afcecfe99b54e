import base64
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from locattr.graph import Graph
from locattr.storage.codec import (
    _THREADED_BYTES,
    COLUMNS,
    FORMAT_VERSION,
    GraphCodecError,
    Quantized,
    ValueDtype,
    decode_graph,
    encode_graph,
)
from locattr.storage.index_rows import CI_UNIT
from tests.storage.v1_blobs import WRITTEN_BY_V1, WRITTEN_GRAPH, encode_v1


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    n_layers = draw(st.integers(1, 5))
    n_nodes = draw(st.integers(0, 60))
    n_edges = draw(st.integers(0, 120)) if n_nodes else 0

    def ints(lo: int, hi: int, n: int, unique: bool = False) -> st.SearchStrategy[np.ndarray]:
        return hnp.arrays(np.int64, n, elements=st.integers(lo, hi), unique=unique)

    floats = hnp.arrays(np.float32, n_nodes, elements=st.floats(0, 1, width=32))
    return Graph(
        layers=tuple(f"h.{i}.mlp" for i in range(n_layers)),
        node_layer=draw(ints(0, n_layers - 1, n_nodes)),
        node_pos=draw(ints(0, 2**31 - 1, n_nodes)),
        node_component=draw(ints(0, 2**31 - 1, n_nodes, unique=True)),  # nodes distinct
        node_ci=draw(floats),
        edge_source=draw(ints(0, max(n_nodes - 1, 0), n_edges)),
        edge_target=draw(ints(0, max(n_nodes - 1, 0), n_edges)),
        edge_value=draw(
            hnp.arrays(np.float32, n_edges, elements=st.floats(width=32, allow_nan=True))
        ),
    )


def assert_columns_equal(a: Graph, b: Graph, *, ci_step: float = 0.0) -> None:
    """Every column but the edge values equal; node CIs bit for bit, or within half of
    `ci_step` (plus float32 rounding) when they were quantized."""
    assert a.layers == b.layers
    for name in ("node_layer", "node_pos", "node_component", "edge_source", "edge_target"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    if not ci_step:
        np.testing.assert_array_equal(a.node_ci.view(np.uint32), b.node_ci.view(np.uint32))
        return
    error = np.abs(a.node_ci.astype(np.float64) - b.node_ci.astype(np.float64))
    assert np.all(error <= ci_step / 2 + np.abs(a.node_ci) * 2.0**-24)


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_float32_round_trip_is_bit_exact(graph: Graph) -> None:
    decoded = decode_graph(encode_graph(graph))
    assert_columns_equal(graph, decoded)
    np.testing.assert_array_equal(
        graph.edge_value.view(np.uint32), decoded.edge_value.view(np.uint32)
    )


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_float16_round_trip_keeps_float16_precision(graph: Graph) -> None:
    in_range = Graph(
        **{**graph.__dict__, "edge_value": np.clip(np.nan_to_num(graph.edge_value), -6e4, 6e4)}
    )
    decoded = decode_graph(encode_graph(in_range, value_encoding=ValueDtype.FLOAT16))
    assert_columns_equal(in_range, decoded)
    np.testing.assert_array_equal(
        decoded.edge_value, in_range.edge_value.astype(np.float16).astype(np.float32)
    )


def test_float16_refuses_values_it_cannot_hold() -> None:
    graph = Graph.from_records([("a", 0, 0, 1.0), ("b", 0, 0, 1.0)], [("a", 0, 0, "b", 0, 0, 1e6)])
    with pytest.raises(GraphCodecError, match="float32"):
        encode_graph(graph, value_encoding=ValueDtype.FLOAT16)


def test_canonical_order_is_smaller_than_shuffled() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    graph = Graph(
        layers=("a", "b"),
        node_layer=np.repeat([0, 1], n // 2),
        node_pos=np.tile(np.arange(50), n // 50),
        node_component=rng.permutation(n),
        node_ci=rng.random(n),
        edge_source=rng.integers(0, n // 2, 50_000),
        edge_target=rng.integers(n // 2, n, 50_000),
        edge_value=rng.standard_normal(50_000),
    )
    canonical = graph.canonical()
    assert canonical.same_as(graph)
    assert len(encode_graph(canonical)) < 0.8 * len(encode_graph(graph))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:5], "truncated"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([99]) + b[5:], "format 99"),
        (lambda b: b[:-10], "corrupt"),
        (lambda b: b[:12] + b"[" + b[13:], "corrupt"),
    ],
)
def test_damaged_blobs_raise_codec_errors(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    graph = Graph.from_records(
        [("a", 0, 1, 0.5), ("b", 1, 2, 0.25)], [("a", 0, 1, "b", 1, 2, -3.0)]
    )
    with pytest.raises(GraphCodecError, match=message):
        decode_graph(mangle(encode_graph(graph)))


@pytest.mark.parametrize(("encode", "message"), [(encode_v1, "shorter"), (encode_graph, "says")])
def test_header_counts_must_match_body(encode: Callable[[Graph], bytes], message: str) -> None:
    graph = Graph.from_records([("a", 0, 1, 0.5)], [])
    blob = encode(graph)
    header_len = struct.unpack_from("<I", blob, 8)[0]
    header = blob[12 : 12 + header_len].replace(b'"n_nodes":1', b'"n_nodes":2')
    with pytest.raises(GraphCodecError, match=message):
        decode_graph(blob[:8] + struct.pack("<I", len(header)) + header + blob[12 + header_len :])


def test_records_view_matches_arrays() -> None:
    graph = Graph.from_records(
        [("a", 0, 1, 0.5), ("b", 1, 2, 0.25)], [("a", 0, 1, "b", 1, 2, -3.0)]
    )
    decoded = decode_graph(encode_graph(graph))
    assert decoded.nodes[1].layer == "b" and decoded.nodes[1].ci == 0.25
    edge = decoded.edges[0]
    assert (edge.source_layer, edge.target_component, edge.value) == ("a", 2, -3.0)
    arrays = decoded.edge_arrays()
    assert arrays["target_layer"].tolist() == ["b"] and arrays["value"].tolist() == [-3.0]


def test_writes_format_4() -> None:
    assert FORMAT_VERSION == 4 and encode_graph(Graph.empty())[4] == 4


WRITTEN_BY_V3_QUANTIZED = base64.b64decode(
    "TEFHUgMCAAD/AAAAeyJsYXllcnMiOlsiaC4wLm1scC5jX2ZjIiwiaC4wLm1scC5kb3duX3Byb2oiLCJoLjEu"
    "YXR0bi5vX3Byb2oiXSwibl9ub2RlcyI6NCwibl9lZGdlcyI6MywiY29sdW1ucyI6W1siZGVsdGEiLCJ8dTEi"
    "LDE3XSxbImRlbHRhIiwifHUxIiwxN10sWyJkZWx0YSIsInx1MSIsMTddLFsicGxhaW4iLCI8ZjQiLDI5XSxb"
    "InJ1bnMiLCI8aTQiLDI0XSxbImRlbHRhIiwifHUxIiwxNl0sWyJxdWFudGl6ZWQiLCI8dTQiLDI1XV0sInZh"
    "bHVlX3N0ZXAiOjFlLTZ9KLUv/SQEIQAAAAABAZRnpx8otS/9JAQhAAAAAQAA70Iiayi1L/0kBCEAAAMAAv1z"
    "dWefKLUv/SQQgQAAAAAAAAAAAAAAQACAPz8/PumraQsotS/9JBBdAAAoAAABAgABAAbQApUbrSIotS/9JAMZ"
    "AAAB/wKV0ra/KLUv/SQMYQAAPyBgQqHjDwcWAAAAuTgtTw=="
)
"""Written by locattr's format-3 encoder from `WRITTEN_GRAPH` at step 1e-6 (node CIs plain)."""


def test_blobs_written_by_format_3_decode() -> None:
    assert WRITTEN_BY_V3_QUANTIZED[4:6] == bytes([3, 2])
    decoded = decode_graph(WRITTEN_BY_V3_QUANTIZED)
    assert decoded.same_as(WRITTEN_GRAPH, atol=5e-7)
    np.testing.assert_array_equal(decoded.node_ci, WRITTEN_GRAPH.node_ci)  # float32 there


def test_format_4_quantizes_node_ci_with_the_values() -> None:
    quantized = decode_graph(encode_graph(WRITTEN_GRAPH, value_encoding=Quantized(1e-6)))
    q = np.rint(WRITTEN_GRAPH.node_ci.astype(np.float64) / CI_UNIT)
    np.testing.assert_array_equal(quantized.node_ci, (q * CI_UNIT).astype(np.float32))
    exact = decode_graph(encode_graph(WRITTEN_GRAPH, value_encoding=ValueDtype.FLOAT32))
    np.testing.assert_array_equal(exact.node_ci, WRITTEN_GRAPH.node_ci)


def test_format_3_blobs_cannot_hold_quantized_node_ci() -> None:
    blob = encode_graph(WRITTEN_GRAPH, value_encoding=Quantized(1e-6))
    assert b'"ci_step"' in blob and b'"quantized"' in blob
    with pytest.raises(GraphCodecError, match="node_ci cannot be stored as 'quantized'"):
        decode_graph(blob[:4] + bytes([3]) + blob[5:])


WRITTEN_BY_V2 = {
    ValueDtype.FLOAT32: base64.b64decode(
        "TEFHUgIAAADpAAAAeyJsYXllcnMiOlsiaC4wLm1scC5jX2ZjIiwiaC4wLm1scC5kb3duX3Byb2oiLCJoLjEu"
        "YXR0bi5vX3Byb2oiXSwibl9ub2RlcyI6NCwibl9lZGdlcyI6MywiY29sdW1ucyI6W1siZGVsdGEiLCJ8dTEi"
        "LDE3XSxbImRlbHRhIiwifHUxIiwxN10sWyJkZWx0YSIsInx1MSIsMTddLFsicGxhaW4iLCI8ZjQiLDI5XSxb"
        "InJ1bnMiLCI8aTQiLDI0XSxbImRlbHRhIiwifHUxIiwxNl0sWyJwbGFpbiIsIjxmNCIsMjVdXX0otS/9JAQh"
        "AAAAAAEBlGenHyi1L/0kBCEAAAABAADvQiJrKLUv/SQEIQAAAwAC/XN1Z58otS/9JBCBAAAAAAAAAAAAAABA"
        "AIA/Pz8+6atpCyi1L/0kEF0AACgAAAECAAEABtAClRutIii1L/0kAxkAAAH/ApXStr8otS/9JAxhAAAAAAAA"
        "AAAAgEC/Pj+9ZdYI"
    ),
    ValueDtype.FLOAT16: base64.b64decode(
        "TEFHUgIBAADpAAAAeyJsYXllcnMiOlsiaC4wLm1scC5jX2ZjIiwiaC4wLm1scC5kb3duX3Byb2oiLCJoLjEu"
        "YXR0bi5vX3Byb2oiXSwibl9ub2RlcyI6NCwibl9lZGdlcyI6MywiY29sdW1ucyI6W1siZGVsdGEiLCJ8dTEi"
        "LDE3XSxbImRlbHRhIiwifHUxIiwxN10sWyJkZWx0YSIsInx1MSIsMTddLFsicGxhaW4iLCI8ZjQiLDI5XSxb"
        "InJ1bnMiLCI8aTQiLDI0XSxbImRlbHRhIiwifHUxIiwxNl0sWyJwbGFpbiIsIjxmMiIsMTldXX0otS/9JAQh"
        "AAAAAAEBlGenHyi1L/0kBCEAAAABAADvQiJrKLUv/SQEIQAAAwAC/XN1Z58otS/9JBCBAAAAAAAAAAAAAABA"
        "AIA/Pz8+6atpCyi1L/0kEF0AACgAAAECAAEABtAClRutIii1L/0kAxkAAAH/ApXStr8otS/9JAYxAAAAAAC4"
        "NDrgTjW/"
    ),
}
"""Written by locattr's format-2 encoder from `WRITTEN_GRAPH` (before format 3)."""


@pytest.mark.parametrize("value_dtype", list(ValueDtype))
def test_blobs_written_by_format_2_decode(value_dtype: ValueDtype) -> None:
    blob = WRITTEN_BY_V2[value_dtype]
    assert blob[4] == 2 and blob[5] == value_dtype
    decoded = decode_graph(blob)
    assert decoded.same_as(WRITTEN_GRAPH)
    assert decoded.edges == WRITTEN_GRAPH.edges and decoded.nodes == WRITTEN_GRAPH.nodes
    assert decode_graph(encode_graph(WRITTEN_GRAPH, value_encoding=value_dtype)).same_as(decoded)


def test_format_2_blobs_cannot_claim_quantized_values() -> None:
    blob = WRITTEN_BY_V2[ValueDtype.FLOAT32]
    with pytest.raises(GraphCodecError, match="unknown value code 2"):
        decode_graph(blob[:5] + bytes([2]) + blob[6:])


@settings(max_examples=100, deadline=None)
@given(graphs(), st.sampled_from(ValueDtype))
def test_format_1_blobs_still_decode(graph: Graph, value_dtype: ValueDtype) -> None:
    if value_dtype is ValueDtype.FLOAT16:
        in_range = np.clip(np.nan_to_num(graph.edge_value), -6e4, 6e4)
        graph = Graph(**{**graph.__dict__, "edge_value": in_range})
    decoded = decode_graph(encode_v1(graph, value_dtype))
    assert_columns_equal(graph, decoded)
    np.testing.assert_array_equal(
        decoded.edge_value, graph.edge_value.astype(value_dtype.numpy).astype(np.float32)
    )


@pytest.mark.parametrize("value_dtype", list(ValueDtype))
def test_blobs_written_by_format_1_decode(value_dtype: ValueDtype) -> None:
    assert encode_v1(WRITTEN_GRAPH) == WRITTEN_BY_V1[ValueDtype.FLOAT32]  # a faithful writer
    decoded = decode_graph(WRITTEN_BY_V1[value_dtype])
    assert decoded.same_as(WRITTEN_GRAPH)
    assert decoded.edges == WRITTEN_GRAPH.edges and decoded.nodes == WRITTEN_GRAPH.nodes


def encode_v2_or_later(graph: Graph, value_dtype: ValueDtype) -> bytes:
    return encode_graph(graph, value_encoding=value_dtype)


@pytest.mark.parametrize("encode", [encode_v2_or_later, encode_v1])
@pytest.mark.parametrize("value_dtype", list(ValueDtype))
def test_empty_graph_round_trip(encode: Callable[..., bytes], value_dtype: ValueDtype) -> None:
    for graph in (Graph.empty(), Graph.from_records([("a", 3, 1, 0.5)], [])):
        decoded = decode_graph(encode(graph, value_dtype))
        assert_columns_equal(graph, decoded)
        assert decoded.n_edges == 0 and decoded.edge_value.dtype == np.float32


def big_graph(n_nodes: int = 3000, n_edges: int = 400_000, *, sort: bool = True) -> Graph:
    """Enough edges (>= 1 MB of values) for the values to decode on a second thread."""
    rng = np.random.default_rng(3)
    graph = Graph(
        layers=("a", "b"),
        node_layer=np.repeat([0, 1], n_nodes // 2),
        node_pos=np.tile(np.arange(n_nodes // 2), 2),
        node_component=np.zeros(n_nodes),
        node_ci=rng.random(n_nodes),
        edge_source=rng.integers(0, n_nodes // 2, n_edges),
        edge_target=rng.integers(n_nodes // 2, n_nodes, n_edges),
        edge_value=rng.standard_normal(n_edges) * 10.0 ** rng.uniform(-4, 0, n_edges),
    )
    return graph.canonical() if sort else graph


@pytest.mark.parametrize("value_dtype", list(ValueDtype))
@pytest.mark.parametrize("sort", [True, False])
def test_big_graph_round_trip(value_dtype: ValueDtype, sort: bool) -> None:
    graph = big_graph(sort=sort)
    blob = encode_graph(graph, value_encoding=value_dtype)
    assert columns_of(blob)[0]["columns"][4][0] == ("runs" if sort else "delta")
    decoded = decode_graph(blob)
    assert_columns_equal(graph, decoded)
    np.testing.assert_array_equal(
        decoded.edge_value, graph.edge_value.astype(value_dtype.numpy).astype(np.float32)
    )


def test_columns_compressed_on_several_threads_round_trip() -> None:
    """Columns of 8 MB and more are compressed by zstd's worker threads: their frames too must
    carry their content size."""
    graph = big_graph(n_edges=_THREADED_BYTES // 4 + 1)
    assert_columns_equal(graph, decode_graph(encode_graph(graph)))


def test_integer_columns_are_stored_narrow_when_they_fit() -> None:
    graph = Graph(
        layers=("a",),
        node_layer=np.array([0, 0, 0]),
        node_pos=np.array([-5, 0, 2**30]),  # negative or large: stored in its own width
        node_component=np.array([7, 300, 65535]),
        node_ci=np.array([0.5, 0.25, 1.0]),
        edge_source=np.array([0, 1]),
        edge_target=np.array([2, 1]),  # not sorted: delta-encoded
        edge_value=np.array([1.0, -2.0]),
    )
    blob = encode_graph(graph)
    stored = {
        name: spec[1] for name, spec in zip(COLUMNS, columns_of(blob)[0]["columns"], strict=True)
    }
    assert stored == {
        "node_layer": "|u1",
        "node_pos": "<i4",
        "node_component": "<u2",
        "node_ci": "<f4",
        "edge_target": "|u1",
        "edge_source": "|u1",
        "edge_value": "<f4",
    }
    assert_columns_equal(graph, decode_graph(blob))


def columns_of(blob: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """A format-2 or -3 blob's header and its column frames."""
    header_len = struct.unpack_from("<I", blob, 8)[0]
    header = orjson.loads(blob[12 : 12 + header_len])
    frames, offset = [], 12 + header_len
    for _, _, size in header["columns"]:
        frames.append(blob[offset : offset + size])
        offset += size
    return header, frames


def rebuilt(blob: bytes, header: dict[str, Any], frames: list[bytes]) -> bytes:
    encoded = orjson.dumps(header)
    return blob[:8] + struct.pack("<I", len(encoded)) + encoded + b"".join(frames)


Damage = Callable[[dict[str, Any], list[bytes]], object]


def set_column(index: int, entry: list[Any]) -> Damage:
    def change(header: dict[str, Any], _: list[bytes]) -> None:
        header["columns"][index] = entry

    return change


def edit_frame(index: int, edit: Callable[[bytes], bytes], *, keep_size: bool = False) -> Damage:
    def change(header: dict[str, Any], frames: list[bytes]) -> None:
        frames[index] = edit(frames[index])
        if not keep_size:
            header["columns"][index][2] = len(frames[index])

    return change


def frame_of(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def flip_byte(frame: bytes) -> bytes:
    return frame[:-5] + bytes([frame[-5] ^ 0x55]) + frame[-4:]


SMALL = Graph.from_records([("a", 0, 1, 0.5), ("b", 1, 2, 0.25)], [("a", 0, 1, "b", 1, 2, -3.0)])


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (edit_frame(6, flip_byte, keep_size=True), "edge_value frame: .*"),
        (edit_frame(5, flip_byte, keep_size=True), "edge_source frame: .*"),
        (edit_frame(6, lambda f: f[:-7], keep_size=True), "edge_value frame truncated"),
        (edit_frame(6, lambda f: f[:-7]), "edge_value frame: .*"),
        (edit_frame(0, lambda f: f + b"xx", keep_size=True), "2 bytes after the last column"),
        (edit_frame(0, lambda f: f + b"xx"), "node_layer frame: .*unused data"),
        (edit_frame(3, lambda f: b"not a frame"), "node_ci frame: .*content size"),
        (edit_frame(1, lambda f: frame_of(b"")), "node_pos frame holds 0 bytes, header says"),
        (edit_frame(4, lambda f: frame_of(bytes(3))), "edge_target frame holds 3 bytes"),
        (set_column(3, ["delta", "<f4", 0]), "node_ci cannot be stored as 'delta'"),
        (set_column(6, ["plain", "<f2", 0]), "edge_value cannot be stored as 'plain' '<f2'"),
        (set_column(5, ["runs", "<i4", 0]), "edge_source cannot be stored as 'runs'"),
        (set_column(2, ["zigzag", "<i4", 0]), "node_component cannot be stored as 'zigzag'"),
        (set_column(2, ["delta", "<i8", 0]), "node_component cannot be stored as 'delta' '<i8'"),
        (set_column(0, ["delta", "<u2", 0]), "node_layer cannot be stored as 'delta' '<u2'"),
        (set_column(2, ["delta", "O", 0]), "node_component cannot be stored as 'delta' 'O'"),
        (set_column(2, ["delta", "not a dtype", 0]), "data type 'not a dtype' not understood"),
        (set_column(2, ["delta", "<i4", -1]), "bad node_component column entry"),
        (set_column(2, ["delta", "<i4"]), "bad node_component column entry"),
        (lambda header, _: header["columns"].pop(), "wrong number of columns"),
        (lambda header, _: header.update(columns="x"), "wrong number of columns"),
        (lambda header, _: header.pop("columns"), "'columns'"),
        (lambda header, _: header.update(n_edges=-1), "node and edge counts must be >= 0"),
        (lambda header, _: header.update(layers="ab"), "layers must be a list"),
    ],
)
def test_damaged_format_2_blobs_say_what_is_wrong(damage: Damage, message: str, big: bool) -> None:
    blob = encode_graph(big_graph() if big else SMALL)
    header, frames = columns_of(blob)
    damage(header, frames)
    with pytest.raises(GraphCodecError, match=f"^corrupt graph blob: {message}"):
        decode_graph(rebuilt(blob, header, frames))


@pytest.mark.parametrize(
    ("counts", "message"), [([0, 2], "runs do not add up"), ([2, -1], "negative edge_target run")]
)
def test_runs_must_account_for_every_edge(counts: list[int], message: str) -> None:
    blob = encode_graph(SMALL)
    header, frames = columns_of(blob)
    assert header["columns"][4][0] == "runs"
    frames[4] = frame_of(np.array(counts, "<i4").view(np.uint8).reshape(2, 4).T.tobytes())
    header["columns"][4][2] = len(frames[4])
    with pytest.raises(GraphCodecError, match=message):
        decode_graph(rebuilt(blob, header, frames))


def test_decoded_endpoints_are_checked() -> None:
    blob = encode_graph(SMALL)
    header, frames = columns_of(blob)
    frames[5] = frame_of(bytes([9]))  # edge 0 from node 9 of 2
    header["columns"][5] = ["delta", "|u1", len(frames[5])]
    with pytest.raises(GraphCodecError, match="outside the node table"):
        decode_graph(rebuilt(blob, header, frames))
