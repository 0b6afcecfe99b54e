"""A `locattr-generate` SIGKILLed at any point, then rerun, makes exactly the uninterrupted set."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from locattr.generate import GenerateOptions, generate
from tests.generate.builds import assert_consistent, assert_same_builds

GENERATE = str(Path(sys.executable).with_name("locattr-generate"))
N_PROMPTS = 10
ARGS = ["--model", "demo", "--n-ctx", "10", "--n-prompts", str(N_PROMPTS), "--batch-size", "1"]
ARGS += ["--context-windows", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("uninterrupted") / "full.db")
    generate(
        GenerateOptions(
            model="demo",
            output=path,
            n_prompts=N_PROMPTS,
            n_ctx=10,
            batch_size=1,
            device="cpu",
            context_windows=8,
        )
    )
    return path


def stored_prompts(path: Path) -> int:
    if not path.exists():
        return -1
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05) as connection:
            return connection.execute("SELECT count(*) FROM prompts").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or busy
        return -1


# (workers, kill once this many prompts are stored; -1: as soon as the file exists)
TRIALS = [(1, -1), (1, 3), (2, 1), (2, 5), (2, 8)]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "kill_at"), TRIALS)
def test_sigkill_then_rerun_makes_the_uninterrupted_set(
    tmp_path: Path, uninterrupted: str, workers: int, kill_at: int
) -> None:
    target = tmp_path / "killed.db"
    command = [GENERATE, *ARGS, "--output", str(target), "--n-gpus", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while target.exists() if kill_at < 0 else stored_prompts(target) < kill_at:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert stored_prompts(target) < N_PROMPTS  # it really was interrupted
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_builds(uninterrupted, str(target))
    assert_consistent(str(target))
