"""locattr-generate end to end on the shipped demo run (CPU, one process)."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from locattr import LocalAttrDB
from locattr.compute import compute_graph, load_run
from locattr.datasets import DatasetError, DatasetSpec, dataset_windows
from locattr.demo import demo_context_windows, demo_run_path
from locattr.demo.corpus import stories
from locattr.errors import LocattrError
from locattr.generate import DatasetChoice, GenerateError, GenerateOptions, generate
from locattr.generate.contexts import compute_contexts

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))


def options(output: Path, **overrides: object) -> GenerateOptions:
    values: dict[str, object] = {
        "model": "demo",
        "output": str(output),
        "n_prompts": 4,
        "n_ctx": 12,
        "context_windows": 16,
    }
    values.update(overrides)
    return GenerateOptions(**values)  # type: ignore[arg-type]


def test_graphs_equal_computing_the_prompts_directly(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.db"
    assert generate(options(db_path)).added == 4
    run = load_run(demo_run_path())
    with LocalAttrDB(db_path, readonly=True) as db:
        assert db.get_prompt_count() == 4
        assert db.get_meta()["run"] == "demo" and len(db.get_meta()["config_digest"]) == 64
        for info in db.iter_prompts():
            stored = db.get_graph(info.id)
            assert stored is not None and stored.n_edges > 0
            direct = compute_graph(run, info.token_ids, include_wte=True, include_output=True)
            # Stored at the default precision (step 1e-6): within half a step of the compute.
            assert stored.same_as(direct, rtol=1e-5, atol=1e-7 + 0.5e-6)
            assert "".join(info.tokens).strip()  # readable text for previews
        key = db.get_unique_components()[0]
        assert db.find_prompts_with_components([key]).total >= 1


def test_rerunning_resumes_by_identity(tmp_path: Path) -> None:
    db_path = tmp_path / "resume.db"
    assert generate(options(db_path, n_prompts=2)).added == 2
    assert generate(options(db_path, n_prompts=5)).added == 3
    again = generate(options(db_path, n_prompts=5))
    assert (again.added, again.skipped) == (0, 5)
    with LocalAttrDB(db_path, readonly=True) as db:
        identities = [p.identity for p in db.iter_prompts()]
    assert len(identities) == len(set(identities)) == 5
    assert identities == [f"dataset:demo-grammar:heldout-seed0-ctx12:{i}" for i in range(5)]


def test_other_settings_are_refused_before_any_compute(tmp_path: Path) -> None:
    db_path = tmp_path / "settings.db"
    generate(options(db_path, n_prompts=1))
    with pytest.raises(GenerateError, match="attr_threshold"):
        generate(options(db_path, attr_threshold=1e-2))


def test_prompts_file(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "once there was a little boy"}\n\n{"token_ids": [5, 6, 7, 8]}\n')
    db_path = tmp_path / "file.db"
    assert generate(options(db_path, prompts_file=prompts)).added == 2
    with LocalAttrDB(db_path, readonly=True) as db:
        first, second = db.iter_prompts()
    assert first.source == {"file": "prompts.jsonl", "line": 1} and len(first.token_ids) == 6
    assert second.token_ids == [5, 6, 7, 8]
    prompts.write_text('{"text": "fine"}\n{"tokens": 3}\n')
    with pytest.raises(GenerateError, match=r"prompts.jsonl:2: expected"):
        generate(options(tmp_path / "bad.db", prompts_file=prompts))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/no/such/run"], "does not exist: pass an SPD run directory"),
        (["--model", "/tmp"], "final_config.yaml"),
        (["--model", "demo", "--n-ctx", "1000"], "outside this model's context (1..64)"),
        (["--model", "demo", "--prompts-file", "/no/such.jsonl"], "does not exist"),
        (["--model", "wandb:bad"], "malformed W&B run path"),
        (["--model", "wandb:ent/proj/runs/abcd1234"], "or pass a local run directory"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [GENERATE, *args, "--output", str(tmp_path / "x.db"), "--n-prompts", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOCATTR_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("x.db*"))  # no empty database, -wal or -shm left behind


def test_a_failed_build_keeps_an_existing_database(tmp_path: Path) -> None:
    """Only a file the failed call created is removed, even an existing empty database."""
    built, empty = tmp_path / "built.db", tmp_path / "empty.db"
    generate(options(built, n_prompts=1))
    LocalAttrDB(empty).close()
    for path in (built, empty):
        with pytest.raises(LocattrError, match="does not exist"):
            generate(options(path, model=str(tmp_path / "no-such-run")))
    with LocalAttrDB(built, readonly=True) as db, LocalAttrDB(empty, readonly=True) as other:
        assert (db.get_prompt_count(), other.get_prompt_count()) == (1, 0)


@pytest.mark.parametrize(
    ("output", "extra", "message"),
    [
        ("/no/such/dir/x.db", [], "directory /no/such/dir does not exist"),
        (str(Path(__file__)), [], "is not a usable locattr database"),
        ("x.db", ["--shard", "3/2"], "expected K/N with 1 <= K <= N"),
        ("x.db", ["--n-gpus", "0"], "must be at least 1"),
        ("x.db", ["--output-prob-threshold", "0"], "expected a probability in (0, 1]"),
        ("x.db", ["--output-prob-threshold", "1.5"], "expected a probability in (0, 1]"),
        ("x.db", ["--output-prob-threshold", "nan"], "expected a probability in (0, 1]"),
        ("x.db", ["--output-prob-threshold", "often"], "expected a probability in (0, 1]"),
    ],
)
def test_bad_outputs_and_flags_are_one_line(
    tmp_path: Path, output: str, extra: list[str], message: str
) -> None:
    result = subprocess.run(
        [GENERATE, "--model", "demo", "--output", output, "--n-prompts", "1", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_original_underscore_flags_are_accepted(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            GENERATE,
            "--wandb_path",
            "demo",
            "--output_path",
            str(tmp_path / "o.db"),
            "--n_prompts",
            "1",
            "--n_ctx",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 prompt added (per worker: 1)" in result.stdout
    assert "1/1 prompts" in result.stderr  # the progress line a non-interactive log gets


def test_activation_contexts_are_stored_once_from_windows_apart_from_the_prompts(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "contexts.db"
    generate(options(db_path, n_prompts=2))
    run = load_run(demo_run_path())
    expected = compute_contexts(run, demo_context_windows(16, 12))
    with LocalAttrDB(db_path, readonly=True) as db:
        stored = db.get_activation_contexts()
        prompt_windows = {tuple(p.token_ids) for p in db.iter_prompts()}
        assert db.get_meta()["activation_contexts"]["windows"] == 16
        mean_ci = {c.key: c.mean_ci for c in db.list_components(limit=1000)}
    assert stored == expected and len(stored) > 10
    assert not prompt_windows & {tuple(w) for w in demo_context_windows(16, 12)}
    for key, record in stored.items():
        for tokens, ids, pos in zip(
            record["example_tokens"],
            record["example_token_ids"],
            record["example_active_pos"],
            strict=True,
        ):
            assert len(tokens) == len(ids) and 0 <= pos < len(tokens)
        assert record["pr_recalls"] == sorted(record["pr_recalls"], reverse=True)
        if key in mean_ci:
            assert mean_ci[key] == pytest.approx(record["mean_ci"])
    # A rerun that adds prompts leaves the contexts alone (computed once per database).
    generate(options(db_path, n_prompts=3, context_windows=16))
    with LocalAttrDB(db_path, readonly=True) as db:
        assert db.get_activation_contexts() == stored


def test_prompts_from_a_local_dataset_follow_the_context_windows(tmp_path: Path) -> None:
    data = tmp_path / "stories"
    data.mkdir()
    lines = [orjson.dumps({"story": s}).decode() for s in stories("heldout", 60, seed=3)]
    (data / "train.jsonl").write_text("\n".join(lines))
    db_path = tmp_path / "dataset.db"
    choice = DatasetChoice(name=str(data), split="train", column="story")
    built = options(db_path, model=str(demo_run_path()), dataset=choice, context_windows=5)
    assert generate(built).added == 4
    spec = DatasetSpec(name=str(data), split="train", column="story")
    run = load_run(demo_run_path())
    windows = dict(dataset_windows(spec, run.tokenizer, 12, 0, start=0, stop=9))
    with LocalAttrDB(db_path, readonly=True) as db:
        stored = {p.source["index"]: p.token_ids for p in db.iter_prompts()}
        assert db.get_meta()["dataset"] == {"name": str(data), "split": "train", "column": "story"}
    assert stored == {i: windows[i] for i in range(5, 9)}
    with pytest.raises(DatasetError, match="has no column 'text'; its columns are story"):
        generate(
            options(
                tmp_path / "x.db",
                model=str(demo_run_path()),
                dataset=DatasetChoice(name=str(data), column="text"),
            )
        )
