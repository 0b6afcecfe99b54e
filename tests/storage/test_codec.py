import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from locattr.graph import Graph
from locattr.storage.codec import GraphCodecError, ValueDtype, decode_graph, encode_graph


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


def assert_columns_equal(a: Graph, b: Graph) -> None:
    assert a.layers == b.layers
    for name in ("node_layer", "node_pos", "node_component", "edge_source", "edge_target"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.node_ci.view(np.uint32), b.node_ci.view(np.uint32))


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
    decoded = decode_graph(encode_graph(in_range, value_dtype=ValueDtype.FLOAT16))
    assert_columns_equal(in_range, decoded)
    np.testing.assert_array_equal(
        decoded.edge_value, in_range.edge_value.astype(np.float16).astype(np.float32)
    )


def test_float16_refuses_values_it_cannot_hold() -> None:
    graph = Graph.from_records([("a", 0, 0, 1.0), ("b", 0, 0, 1.0)], [("a", 0, 0, "b", 0, 0, 1e6)])
    with pytest.raises(GraphCodecError, match="float32"):
        encode_graph(graph, value_dtype=ValueDtype.FLOAT16)


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


def test_header_counts_must_match_body() -> None:
    graph = Graph.from_records([("a", 0, 1, 0.5)], [])
    blob = encode_graph(graph)
    header_len = struct.unpack_from("<I", blob, 8)[0]
    header = blob[12 : 12 + header_len].replace(b'"n_nodes":1', b'"n_nodes":2')
    with pytest.raises(GraphCodecError, match="shorter"):
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
