"""Edge values at a stated precision: round trips within half a step, float32 still bit-exact,
the exact fallback for values a step cannot count, and a database built with the default
precision searched and served like a float32 one."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sqlalchemy import text

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.generate import GenerateError, GenerateOptions, generate
from locattr.generate.options import parse_value_precision
from locattr.graph import Graph
from locattr.storage import DatabaseError, PromptRecord
from locattr.storage.codec import (
    DEFAULT_VALUE_ENCODING,
    GraphCodecError,
    Quantized,
    ValueDtype,
    ValueEncoding,
    decode_graph,
    encode_graph,
    parse_value_encoding,
    stored_edge_values,
    stored_node_ci,
    value_encoding_label,
)
from locattr.storage.index_rows import CI_UNIT
from locattr.storage.provenance import VALUE_PRECISION_KEY, first_difference
from tests.api.server import running_server
from tests.generate.builds import assert_corpus_tables_match_graphs
from tests.graphs import LAYERS, random_record
from tests.storage.test_codec import SMALL, assert_columns_equal, big_graph, columns_of, rebuilt

STEPS = st.sampled_from([1e-6, 1e-5, 2.5e-4, 1e-3, 0.1, 3.0])


def graph_with_values(values: np.ndarray) -> Graph:
    """A small graph (two layers) whose edges carry `values`, in canonical order."""
    n = len(values)
    return Graph(
        layers=("a", "b"),
        node_layer=np.array([0, 1]),
        node_pos=np.array([0, 0]),
        node_component=np.array([0, 0]),
        node_ci=np.array([0.5, 0.25]),
        edge_source=np.zeros(n),
        edge_target=np.ones(n),
        edge_value=values,
    )


def finite_values(max_abs: float) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(
        np.float32,
        st.integers(0, 200),
        elements=st.floats(-max_abs, max_abs, width=32, allow_subnormal=True),
    )


def assert_within_precision(decoded: np.ndarray, original: np.ndarray, step: float) -> None:
    """|decoded - original| <= step / 2, plus the float32 rounding of the decoded value (half
    its ulp) and the float64 rounding of q * step."""
    d, v = decoded.astype(np.float64), original.astype(np.float64)
    slack = np.spacing(np.abs(decoded)).astype(np.float64) / 2 + np.abs(v) * 2.0**-50
    assert np.all(np.abs(d - v) <= step / 2 + slack)


@settings(max_examples=300, deadline=None)
@given(STEPS, st.data())
def test_quantized_values_decode_within_half_a_step(step: float, data: st.DataObject) -> None:
    values = data.draw(finite_values(max_abs=min(1e6, step * 2.0**52)))
    graph = graph_with_values(values)
    blob = encode_graph(graph, value_encoding=Quantized(step))
    assert blob[5] == 2 and columns_of(blob)[0]["value_step"] == step
    decoded = decode_graph(blob)
    assert_columns_equal(graph, decoded, ci_step=CI_UNIT)
    assert decoded.edge_value.dtype == np.float32
    assert_within_precision(decoded.edge_value, values, step)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(0, 100), elements=st.floats(width=32, allow_nan=True)),
    st.sampled_from([ValueDtype.FLOAT32, Quantized(1e-6), Quantized(0.5)]),
)
def test_stored_edge_values_are_what_blobs_decode_to(
    values: np.ndarray, encoding: ValueEncoding
) -> None:
    """Bit for bit, whatever the values (NaN, inf, float32's extremes included): what write
    time derives the corpus tables from equals what a rebuild from the blobs reads."""
    decoded = decode_graph(encode_graph(graph_with_values(values), value_encoding=encoding))
    stored = stored_edge_values(values, encoding)
    np.testing.assert_array_equal(stored.view(np.uint32), decoded.edge_value.view(np.uint32))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(1, 100), elements=st.floats(width=32, allow_nan=True)),
    st.sampled_from([ValueDtype.FLOAT32, Quantized(1e-6), Quantized(0.5)]),
)
def test_stored_node_ci_is_what_blobs_decode_to(ci: np.ndarray, encoding: ValueEncoding) -> None:
    """The same for node CIs (what the index rows are computed from)."""
    n = len(ci)
    graph = Graph(
        layers=("a",),
        node_layer=np.zeros(n),
        node_pos=np.arange(n),
        node_component=np.zeros(n),
        node_ci=ci,
        edge_source=np.zeros(0),
        edge_target=np.zeros(0),
        edge_value=np.zeros(0, np.float32),
    )
    decoded = decode_graph(encode_graph(graph, value_encoding=encoding))
    stored = stored_node_ci(ci, encoding)
    np.testing.assert_array_equal(stored.view(np.uint32), decoded.node_ci.view(np.uint32))


def test_node_ci_keeps_its_precision_when_the_values_fall_back_to_float32() -> None:
    """A value a step cannot count stores the edge values as float32; the node CIs are still
    what `stored_node_ci` says (the index is computed from them)."""
    graph = graph_with_values(np.array([np.nan, 0.5], np.float32))
    graph = Graph(**{**graph.__dict__, "node_ci": np.array([0.1234567, 0.25], np.float32)})
    blob = encode_graph(graph, value_encoding=Quantized(1e-6))
    decoded = decode_graph(blob)
    assert blob[5] == 0  # the values' code: float32
    stored = stored_node_ci(graph.node_ci, Quantized(1e-6))
    np.testing.assert_array_equal(decoded.node_ci, stored)
    assert decoded.node_ci[0] != graph.node_ci[0]


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(0, 100), elements=st.floats(width=32, allow_nan=True)))
def test_float32_stays_bit_exact(values: np.ndarray) -> None:
    blob = encode_graph(graph_with_values(values), value_encoding=ValueDtype.FLOAT32)
    assert blob[5] == 0
    decoded = decode_graph(blob).edge_value
    np.testing.assert_array_equal(decoded.view(np.uint32), values.view(np.uint32))


@pytest.mark.parametrize(
    "odd", [math.nan, math.inf, -math.inf, 3.0e38, -(2.0**53) * 1e-6 * 1.01, 2.0**53 * 1e-6 * 1.01]
)
def test_values_a_step_cannot_count_store_the_graph_exactly_as_float32(odd: float) -> None:
    """Not finite, or 2**53 steps or more from 0: the whole column is stored as float32, which
    is exact and so within any precision; the blob says so (value code 0)."""
    values = np.array([0.25, odd, -1e-4], dtype=np.float32)
    blob = encode_graph(graph_with_values(values), value_encoding=Quantized(1e-6))
    assert blob[5] == 0 and "value_step" not in columns_of(blob)[0]
    decoded = decode_graph(blob).edge_value
    np.testing.assert_array_equal(decoded.view(np.uint32), values.view(np.uint32))
    np.testing.assert_array_equal(
        stored_edge_values(values, Quantized(1e-6)).view(np.uint32), values.view(np.uint32)
    )


def test_just_below_the_limit_is_still_quantized() -> None:
    values = np.array([0.25, -(2.0**52) * 1e-6], dtype=np.float32)
    blob = encode_graph(graph_with_values(values), value_encoding=Quantized(1e-6))
    assert blob[5] == 2 and columns_of(blob)[0]["columns"][6][1] == "<u8"
    assert_within_precision(decode_graph(blob).edge_value, values, 1e-6)


def test_step_counts_are_stored_in_the_narrowest_unsigned_dtype() -> None:
    for values, stored in [
        ([0.0, 1e-6, -2e-6], "|u1"),
        ([0.0001, -0.0001], "|u1"),  # zigzag 200 and 199
        ([0.03, -0.01], "<u2"),
        ([1.5, -0.25], "<u4"),
    ]:
        blob = encode_graph(
            graph_with_values(np.array(values, np.float32)), value_encoding=Quantized(1e-6)
        )
        assert columns_of(blob)[0]["columns"][6][:2] == ["quantized", stored], values


@pytest.mark.parametrize("step", [0.0, -1e-6, math.nan, math.inf, True, "1e-6"])
def test_a_step_must_be_a_finite_positive_number(step: Any) -> None:
    with pytest.raises(ValueError, match="finite step > 0"):
        Quantized(step)


@pytest.mark.parametrize(
    ("label", "encoding"),
    [
        ("float32", ValueDtype.FLOAT32),
        ("FLOAT16", ValueDtype.FLOAT16),
        ("1e-6", Quantized(1e-6)),
        (1e-06, Quantized(1e-6)),
        ("0.001", Quantized(1e-3)),
    ],
)
def test_labels_name_encodings(label: str | float, encoding: ValueEncoding) -> None:
    assert parse_value_encoding(label) == encoding
    assert parse_value_encoding(value_encoding_label(encoding)) == encoding


@pytest.mark.parametrize("label", ["float64", "", "-1e-6", "0", "nan", "1e-6x"])
def test_unusable_labels_say_what_is_accepted(label: str) -> None:
    with pytest.raises(GenerateError, match="expected float32, float16 or a step > 0"):
        parse_value_precision(label)


def test_generation_defaults_to_the_originals_precision_and_checks_it() -> None:
    options = GenerateOptions(model="demo", output="x.db", n_prompts=1)
    assert options.value_precision == DEFAULT_VALUE_ENCODING == Quantized(1e-6)
    GenerateOptions(model="demo", output="x.db", n_prompts=1, value_precision=ValueDtype.FLOAT32)
    with pytest.raises(GenerateError, match="coarser than --attr-threshold"):
        GenerateOptions(model="demo", output="x.db", n_prompts=1, value_precision=Quantized(1e-3))


def test_precision_is_fixed_provenance_and_older_builds_stored_float32() -> None:
    built = {"run": "demo", VALUE_PRECISION_KEY: 1e-6}
    difference = first_difference(built, {"run": "demo", VALUE_PRECISION_KEY: "float32"})
    assert difference is not None and difference.key == VALUE_PRECISION_KEY
    older = first_difference({"run": "demo"}, built)  # built before the key existed
    assert older is not None and older.existing == "float32"
    stated = {"run": "demo", VALUE_PRECISION_KEY: "float32"}
    assert first_difference({"run": "demo"}, stated) is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda h, _: h.pop("value_step"), "'value_step'"),
        (lambda h, _: h.update(value_step=0), "bad value_step 0"),
        (lambda h, _: h.update(value_step="1e-6"), "bad value_step '1e-6'"),
        (lambda h, _: h["columns"][6].__setitem__(0, "plain"), "edge_value cannot be stored as"),
        (lambda h, _: h["columns"][6].__setitem__(1, "<i4"), "edge_value cannot be stored as"),
        (lambda h, _: h["columns"][3].__setitem__(0, "plain"), "node_ci cannot be stored"),
        (lambda h, _: h.pop("ci_step"), "node_ci cannot be stored as 'quantized'"),
    ],
)
@pytest.mark.parametrize("big", [False, True])
def test_damaged_quantized_blobs_say_what_is_wrong(damage: Any, message: str, big: bool) -> None:
    blob = encode_graph(big_graph() if big else SMALL, value_encoding=Quantized(1e-6))
    header, frames = columns_of(blob)
    damage(header, frames)
    with pytest.raises(GraphCodecError, match=f"^corrupt graph blob: {message}"):
        decode_graph(rebuilt(blob, header, frames))


def test_float_blobs_cannot_hold_a_quantized_column() -> None:
    blob = encode_graph(SMALL, value_encoding=Quantized(1e-6))
    with pytest.raises(GraphCodecError, match="cannot be stored as 'quantized'"):
        decode_graph(blob[:5] + bytes([0]) + blob[6:])


def test_big_graphs_round_trip_on_the_second_thread() -> None:
    graph = big_graph()
    blob = encode_graph(graph, value_encoding=Quantized(1e-6))
    decoded = decode_graph(blob)
    assert_columns_equal(graph, decoded, ci_step=CI_UNIT)
    assert_within_precision(decoded.edge_value, graph.edge_value, 1e-6)
    assert len(blob) < 0.8 * len(encode_graph(graph))


# -- a database built at the default precision, against a float32 one ----------------------------

STEP = 1e-6


def build(path: Path, records: list[PromptRecord], precision: object) -> str:
    """A database whose build recorded `precision`: every write then follows it."""
    with LocalAttrDB(path) as db:
        db.register_layers(LAYERS)
        db.set_meta({"run": "test-run"})
        if precision is not None:
            db.set_meta({VALUE_PRECISION_KEY: precision})
        for start in range(0, len(records), 4):
            db.add_prompts(records[start : start + 4])
        db.build_postings()
    return str(path)


@pytest.fixture(scope="module")
def twin_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The same 24 prompts stored at float32 and at the default precision."""
    rng = np.random.default_rng(17)
    records = [random_record(rng, n_nodes=24, n_edges=80) for _ in range(24)]
    root = tmp_path_factory.mktemp("precision")
    exact = build(root / "float32.db", records, "float32")
    default = build(root / "default.db", records, value_encoding_label(DEFAULT_VALUE_ENCODING))
    return exact, default


def value_codes(path: str) -> set[int]:
    with LocalAttrDB(path, readonly=True) as db, db.engine.connect() as connection:
        blobs = connection.execute(text("SELECT graph FROM prompts")).scalars().all()
    return {bytes(blob)[5] for blob in blobs}


def test_writes_follow_the_recorded_precision(twin_builds: tuple[str, str], tmp_path: Path) -> None:
    exact, default = twin_builds
    assert value_codes(exact) == {0} and value_codes(default) == {2}
    with LocalAttrDB(default, readonly=True) as db:
        assert db.get_meta()[VALUE_PRECISION_KEY] == 1e-6
    record = random_record(np.random.default_rng(99), n_nodes=10, n_edges=20)
    other = build(tmp_path / "other.db", [record], 1e-6)
    with LocalAttrDB(other) as db:
        db.add_prompt(replace(record, identity="again"), value_encoding=ValueDtype.FLOAT32)
    assert value_codes(other) == {0, 2}  # an explicit choice wins
    unrecorded = build(tmp_path / "unrecorded.db", [record], None)
    assert value_codes(unrecorded) == {0}  # nothing recorded: float32


def test_graphs_agree_up_to_the_precision(twin_builds: tuple[str, str]) -> None:
    exact, default = twin_builds
    with LocalAttrDB(exact, readonly=True) as a, LocalAttrDB(default, readonly=True) as b:
        for info in a.iter_prompts():
            left, right = a.get_graph(info.id), b.get_graph(info.id)
            assert left is not None and right is not None
            assert_columns_equal(left, right, ci_step=CI_UNIT)
            assert_within_precision(right.edge_value, left.edge_value, STEP)
            assert not np.array_equal(left.edge_value, right.edge_value)  # it did quantize


def test_corpus_tables_are_what_the_stored_graphs_give(twin_builds: tuple[str, str]) -> None:
    """Derived at write time from the quantized values, so a rebuild from the blobs agrees."""
    assert_corpus_tables_match_graphs(twin_builds[1])


def test_merge_refuses_a_shard_of_another_precision(
    twin_builds: tuple[str, str], tmp_path: Path
) -> None:
    exact, default = twin_builds
    shutil.copy(default, tmp_path / "into.db")
    with (
        LocalAttrDB(tmp_path / "into.db") as into,
        LocalAttrDB(exact, readonly=True) as other,
        pytest.raises(DatabaseError, match=r"'value_precision' differs \('float32' in the source"),
    ):
        into.merge_from(other)


def close(a: Any, b: Any, path: str = "") -> None:
    """JSON trees equal but for numbers, which agree to a few steps (sums of up to a few
    dozen values, each within half a step)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, int | float) and abs(a - b) <= 50 * STEP + 1e-6 * abs(a), path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def twin_servers(twin_builds: tuple[str, str]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    exact, default = twin_builds
    with (
        running_server(Settings(db=exact)) as exact_url,
        running_server(Settings(db=default)) as default_url,
        httpx.Client(base_url=exact_url, timeout=30) as a,
        httpx.Client(base_url=default_url, timeout=30) as b,
    ):
        yield a, b


def test_searched_and_served_like_a_float32_database(
    twin_builds: tuple[str, str], twin_servers: tuple[httpx.Client, httpx.Client]
) -> None:
    exact_client, default_client = twin_servers
    with LocalAttrDB(twin_builds[0], readonly=True) as db:
        keys = [c.key for c in db.list_components(limit=8)]
        n_prompts = db.get_prompt_count()
        pairs = [
            (partner.key, key)
            for key in keys
            for partner in db.get_partners(key, direction="upstream", limit=3).partners
        ]
    assert len(pairs) >= 6
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/api/search", {"components": ",".join(keys[:2]), "mode": "any"}),
        ("/api/search", {"components": keys[0]}),
        ("/api/components", {"limit": 20}),
        (f"/api/components/{keys[0]}", {}),
    ]
    for key in keys:
        requests += [
            (f"/api/components/{key}/partners", {"direction": direction})
            for direction in ("upstream", "downstream")
        ]
    requests += [(f"/api/prompt/{i}", {}) for i in range(1, n_prompts + 1)]
    requests += [(f"/api/prompt/{i}", {"normalize": "l1_target"}) for i in (1, 2)]
    requests += [("/api/search/edges", {"source": s, "target": t}) for s, t in pairs]
    for path, params in requests:
        a, b = exact_client.get(path, params=params), default_client.get(path, params=params)
        assert a.status_code == b.status_code == 200, (path, params)
        close(a.json(), b.json(), f"{path} {params}")
        if path == "/api/search/edges":
            assert a.json()["total"] > 0


# -- generation -----------------------------------------------------------------------------------


def demo_options(output: Path, **overrides: Any) -> GenerateOptions:
    values: dict[str, Any] = {
        "model": "demo",
        "output": str(output),
        "n_prompts": 2,
        "n_ctx": 8,
        "context_windows": 0,
    }
    return GenerateOptions(**{**values, **overrides})


def test_generate_records_the_precision_and_keeps_to_it(tmp_path: Path) -> None:
    default, exact = tmp_path / "default.db", tmp_path / "exact.db"
    generate(demo_options(default))
    generate(demo_options(exact, value_precision=ValueDtype.FLOAT32))
    assert value_codes(str(default)) == {2} and value_codes(str(exact)) == {0}
    with LocalAttrDB(default, readonly=True) as a, LocalAttrDB(exact, readonly=True) as b:
        assert a.get_meta()[VALUE_PRECISION_KEY] == 1e-6
        assert b.get_meta()[VALUE_PRECISION_KEY] == "float32"
        for info in a.iter_prompts():
            quantized, floats = a.get_graph(info.id), b.get_graph(info.id)
            assert quantized is not None and floats is not None
            expected = stored_edge_values(floats.edge_value, Quantized(1e-6))
            np.testing.assert_array_equal(quantized.edge_value, expected)
    with pytest.raises(GenerateError, match=r"value_precision=1e-06, not 'float32'.*1e-06"):
        generate(demo_options(default, n_prompts=3, value_precision=ValueDtype.FLOAT32))
    with pytest.raises(GenerateError, match=r"--value-precision float32"):
        generate(demo_options(exact, n_prompts=3))
    assert generate(demo_options(default, n_prompts=3)).added == 1


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("banana", "--value-precision 'banana': expected float32, float16 or a step > 0"),
        ("0", "expected float32, float16 or a step > 0"),
        ("1e-3", "--value-precision 0.001 is coarser than --attr-threshold 0.0001"),
    ],
)
def test_unusable_precision_flags_are_one_line(tmp_path: Path, flag: str, message: str) -> None:
    command = [str(Path(sys.executable).with_name("locattr-generate")), "--model", "demo"]
    result = subprocess.run(
        [*command, "--output", "x.db", "--n-prompts", "1", "--value-precision", flag],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.db").exists()
