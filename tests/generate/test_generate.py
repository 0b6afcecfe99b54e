"""locattr-generate end to end on the shipped demo run (CPU, one process)."""

import subprocess
import sys
from pathlib import Path

import pytest

from locattr import LocalAttrDB
from locattr.compute import compute_graph, load_run
from locattr.demo import demo_run_path
from locattr.generate import GenerateError, GenerateOptions, generate

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))


def options(output: Path, **overrides: object) -> GenerateOptions:
    values: dict[str, object] = {
        "model": "demo",
        "output": str(output),
        "n_prompts": 4,
        "n_ctx": 12,
    }
    values.update(overrides)
    return GenerateOptions(**values)  # type: ignore[arg-type]


def test_graphs_equal_computing_the_prompts_directly(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.db"
    assert generate(options(db_path)) == 4
    run = load_run(demo_run_path())
    with LocalAttrDB(db_path, readonly=True) as db:
        assert db.get_prompt_count() == 4
        assert db.get_meta()["run"] == "demo" and len(db.get_meta()["config_digest"]) == 64
        for info in db.iter_prompts():
            stored = db.get_graph(info.id)
            assert stored is not None and stored.n_edges > 0
            assert stored.same_as(compute_graph(run, info.token_ids), rtol=1e-5, atol=1e-7)
            assert "".join(info.tokens).strip()  # readable text for previews
        key = db.get_unique_components()[0]
        assert db.find_prompts_with_components([key]).total >= 1


def test_rerunning_resumes_by_identity(tmp_path: Path) -> None:
    db_path = tmp_path / "resume.db"
    assert generate(options(db_path, n_prompts=2)) == 2
    assert generate(options(db_path, n_prompts=5)) == 3
    assert generate(options(db_path, n_prompts=5)) == 0
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
    assert generate(options(db_path, prompts_file=prompts)) == 2
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
        (["--model", "demo", "--n-ctx", "1000"], "--n-ctx must be between"),
        (["--model", "demo", "--prompts-file", "/no/such.jsonl"], "does not exist"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [GENERATE, *args, "--output", str(tmp_path / "x.db"), "--n-prompts", "2"],
        capture_output=True,
        text=True,
        timeout=120,
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
    assert "1 prompts added" in result.stdout
