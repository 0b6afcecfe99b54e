"""A `locattr-generate` SIGKILLed at any point or interrupted with Ctrl-C, then rerun, makes
exactly the uninterrupted set.

The builds run with `LOCATTR_TEST_STALL_AFTER`: each worker stops after a few prompts until it is
signalled, so a build cannot finish before the signal lands however fast the machine is.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from locattr.cli.generate import INTERRUPTED
from locattr.generate import GenerateOptions, generate
from locattr.generate.workers import STALL_AFTER_ENV
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


@contextmanager
def stalling_build(command: list[str], after: int) -> Iterator[subprocess.Popen[str]]:
    """`command` started in its own process group, every worker stopping after `after` prompts;
    killed with its workers when the block ends (a stalled build would wait forever)."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, STALL_AFTER_ENV: str(after)},
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)


def wait_for(process: subprocess.Popen[str], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.02)


# (workers, kill once this many prompts are stored; -1: as soon as the file exists)
TRIALS = [(1, -1), (1, 3), (2, 1), (2, 5), (2, 8)]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "kill_at"), TRIALS)
def test_sigkill_then_rerun_makes_the_uninterrupted_set(
    tmp_path: Path, uninterrupted: str, workers: int, kill_at: int
) -> None:
    target = tmp_path / "killed.db"
    command = [GENERATE, *ARGS, "--output", str(target), "--n-gpus", str(workers)]
    # At most N_PROMPTS - 1 prompts stored in all, and at least every kill_at reached.
    with stalling_build(command, (N_PROMPTS - 1) // workers) as process:
        wait_for(
            process, target.exists if kill_at < 0 else lambda: stored_prompts(target) >= kill_at
        )
        os.kill(process.pid, signal.SIGKILL)  # the main process only: workers die with it
        process.wait(timeout=30)
    assert stored_prompts(target) < N_PROMPTS  # it really was interrupted
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_builds(uninterrupted, str(target))
    assert_consistent(str(target))


PROGRESS_LINE = re.compile(r"activation contexts: \d+/\d+ windows|\d+/\d+ prompts, .*")


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_ctrl_c_exits_130_with_one_line_and_a_rerun_resumes(
    tmp_path: Path, uninterrupted: str, workers: int
) -> None:
    """With workers, SIGINT goes to the whole process group, as a terminal's Ctrl-C sends it:
    the workers must stay quiet and the main process must stop them."""
    target = tmp_path / "interrupted.db"
    command = [GENERATE, *ARGS, "--output", str(target), "--n-gpus", str(workers)]
    after = 2
    with stalling_build(command, after) as process:
        wait_for(process, lambda: stored_prompts(target) >= after * workers)  # all stalled
        workers_ignoring = [ignores_sigint(pid) for pid in worker_pids(process.pid)]
        assert workers_ignoring == ([True] * workers if workers > 1 else [])
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert [line for line in stderr.splitlines() if not PROGRESS_LINE.fullmatch(line)] == [
        INTERRUPTED
    ]
    assert stored_prompts(target) == after * workers
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N_PROMPTS - after * workers} prompts added" in rerun.stdout
    assert_same_builds(uninterrupted, str(target))
    assert_consistent(str(target))


def worker_pids(parent: int) -> list[int]:
    """The parent's worker processes (they name themselves `locattr-w<i>`)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if Path(f"/proc/{pid}/comm").read_text().startswith("locattr-w")
    ]


def ignores_sigint(pid: int) -> bool:
    """Whether the process ignores SIGINT (so a Ctrl-C cannot make a worker print a traceback
    before the main process stops it), from the SigIgn mask in /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.MULTILINE)
    assert found is not None
    return bool(int(found[1], 16) >> (signal.SIGINT - 1) & 1)
