"""locattr-generate's progress: readable worker states and a labelled activation-context phase."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from locattr.cli.progress import BarDisplay, LogLines, describe, describe_workers
from locattr.generate import Progress as BuildProgress


def test_workers_are_named_and_grouped_by_state() -> None:
    states = {5: "computing", 0: "computing", 3: "loading on cuda:3", 1: "computing"}
    states[2] = "computing"
    assert describe_workers(states) == "workers 0-2, 5: computing; worker 3: loading on cuda:3"
    assert describe_workers({0: "computing"}) == "worker 0: computing"
    assert describe_workers({}) == ""


def test_a_log_line_names_the_phase() -> None:
    state = BuildProgress(total=100, done=37, workers={0: "computing", 1: "done"})
    assert describe(state).startswith("37/100 prompts, ")
    assert describe(state).endswith("; worker 0: computing; worker 1: done")
    state.contexts = (128, 512)
    assert describe(state) == "activation contexts: 128/512 windows"


def test_the_context_phase_is_not_the_end_of_the_build() -> None:
    """All prompts may be stored already while the contexts are computed (a resumed build)."""
    stream = io.StringIO()
    lines = LogLines(stream, every_s=3600)
    lines(BuildProgress(total=4, done=4, contexts=(0, 8)))
    lines(BuildProgress(total=4, done=4, contexts=(8, 8)))  # within every_s: not printed
    lines(BuildProgress(total=4, done=4))  # the end: printed at once
    printed = stream.getvalue().splitlines()
    assert printed[0] == "activation contexts: 0/8 windows"
    assert printed[1].startswith("4/4 prompts") and len(printed) == 2


def test_the_bar_shows_no_unknown_total() -> None:
    """One bar per phase, each added with its total: never `0/?`."""
    with Progress(console=Console(file=io.StringIO()), auto_refresh=False) as bar:
        show = BarDisplay(bar)
        assert not bar.tasks
        show(BuildProgress(total=4, done=0, contexts=(64, 512)))
        show(BuildProgress(total=4, done=1, workers={0: "computing"}))
        tasks = {task.description: task for task in bar.tasks}
    assert set(tasks) == {"activation contexts (windows)", "prompts"}
    contexts, prompts = tasks["activation contexts (windows)"], tasks["prompts"]
    assert (contexts.completed, contexts.total) == (64, 512)
    assert (prompts.completed, prompts.total) == (1, 4)
    assert prompts.fields["workers"] == "worker 0: computing"
