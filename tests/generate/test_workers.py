"""Several workers, shards and PostgreSQL: the same database as one process makes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from locattr import LocalAttrDB
from locattr.generate import GenerateError, GenerateOptions, Shard, generate
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.generate.builds import assert_consistent, assert_same_builds, graphs_by_identity

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))
N_PROMPTS = 6


def build(output: str, **overrides: object) -> None:
    values: dict[str, object] = {
        "model": "demo",
        "output": output,
        "n_prompts": N_PROMPTS,
        "n_ctx": 10,
        "batch_size": 2,
        "device": "cpu",
        "context_windows": 8,
    }
    values.update(overrides)
    generate(GenerateOptions(**values))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The reference: one process, no shards."""
    path = str(tmp_path_factory.mktemp("single") / "single.db")
    build(path)
    return path


def test_two_workers_build_what_one_process_builds(tmp_path: Path, single: str) -> None:
    target = str(tmp_path / "two.db")
    build(target, n_workers=2)
    assert_same_builds(single, target)
    assert_consistent(target)
    with LocalAttrDB(target, readonly=True) as db:
        assert db.get_activation_contexts()


def test_shards_merged_equal_one_unsharded_build(tmp_path: Path, single: str) -> None:
    first, second, merged = (str(tmp_path / f"{n}.db") for n in ("a", "b", "merged"))
    build(first, shard=Shard.parse("1/2"))
    build(second, shard=Shard.parse("2/2"))
    assert len(graphs_by_identity(first)) == len(graphs_by_identity(second)) == N_PROMPTS // 2
    result = subprocess.run(
        [str(Path(sys.executable).with_name("locattr")), "merge", merged, first, second],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert_same_builds(single, merged)
    assert_consistent(merged)


def test_every_worker_of_a_shard_gets_an_equal_share(tmp_path: Path) -> None:
    """Shard 1/2 holds the even prompt indices: dealt by index modulo 2, worker 1 got none."""
    target = tmp_path / "shard.db"
    args = ["--model", "demo", "--output", str(target), "--n-ctx", "10", "--n-prompts", "8"]
    args += ["--context-windows", "0", "--device", "cpu", "--shard", "1/2", "--n-gpus", "2"]
    result = subprocess.run([GENERATE, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 prompts added (per worker: 2, 2), 0 already stored (shard 1/2)" in result.stdout
    assert sorted(int(i.rsplit(":", 1)[1]) for i in graphs_by_identity(str(target))) == [0, 2, 4, 6]


@pytest.mark.postgres
def test_two_workers_and_two_shards_into_one_postgres_database(single: str) -> None:
    url = create_postgres_database()
    try:
        build(url, n_workers=2, shard=Shard.parse("1/2"))
        build(url, shard=Shard.parse("2/2"))
        assert_same_builds(single, url)
        assert_consistent(url)
    finally:
        drop_postgres_database(url)


def test_a_killed_worker_fails_the_command_and_keeps_the_others_work(tmp_path: Path) -> None:
    """Worker 1 is SIGKILLed (as the OOM killer would); worker 0 finishes and commits."""
    target = tmp_path / "lost.db"
    args = ["--model", "demo", "--output", str(target), "--n-ctx", "10", "--n-prompts", "40"]
    args += ["--context-windows", "4", "--n-gpus", "2"]
    process = subprocess.Popen(
        [GENERATE, *args, "--batch-size", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = _wait_for_worker(process.pid, "locattr-w1")
    os.kill(worker, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "worker 1 (cpu) failed" in stderr and "exit code -9" in stderr
    assert "Traceback" not in stderr
    stored = graphs_by_identity(str(target))
    assert {int(i.rsplit(":", 1)[1]) % 2 for i in stored} >= {0}
    assert sum(int(i.rsplit(":", 1)[1]) % 2 == 0 for i in stored) == 20  # worker 0 finished
    assert_consistent(str(target))
    rerun = subprocess.run([GENERATE, *args], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(graphs_by_identity(str(target))) == 40


def _wait_for_worker(parent: int, name: str, timeout_s: float = 120) -> int:
    """The pid of the parent's child process named `name` (workers name themselves)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            comm = Path(f"/proc/{pid}/comm")
            if comm.exists() and comm.read_text().strip() == name:
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no {name} process appeared")


def test_more_workers_than_gpus_is_refused_before_any_compute(tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    expected = f"--n-gpus {gpus + 1}, but only {gpus} GPU" if gpus else "no GPU is visible here"
    wanted = GenerateOptions(
        model="demo", output=str(tmp_path / "x.db"), n_prompts=1, n_workers=gpus + 1, device="cuda"
    )
    with pytest.raises(GenerateError, match=expected):
        generate(wanted)
    assert not (tmp_path / "x.db").exists()
