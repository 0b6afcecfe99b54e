"""One overall progress display for `locattr-generate`: a live bar on a terminal, periodic
lines in a log (SLURM, CI), both with prompts/s, ETA and each worker's state, and the
activation contexts' windows while those are computed (before any prompt)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from locattr.generate import Progress as BuildProgress


def describe(state: BuildProgress) -> str:
    """`37/100 prompts, 2.41/s, ETA 26 s; workers 0-2: computing; worker 3: loading on cuda:3`,
    or `activation contexts: 128/512 windows` while those are computed."""
    if state.contexts is not None:
        done, total = state.contexts
        return f"activation contexts: {done}/{total} windows"
    eta = state.eta_s
    workers = describe_workers(state.workers)
    return (
        f"{state.done}/{state.total} prompts, {state.rate:.2f}/s"
        + (f", ETA {eta:.0f} s" if eta is not None else "")
        + (f"; {workers}" if workers else "")
    )


def describe_workers(states: dict[int, str]) -> str:
    """`workers 0-2, 5: computing; worker 3: loading on cuda:3`: the workers in each state,
    numbered as in the process names (`locattr-w<i>`) and error messages."""
    by_state: dict[str, list[int]] = {}
    for worker, state in sorted(states.items()):
        by_state.setdefault(state, []).append(worker)
    return "; ".join(
        f"{'worker' if len(workers) == 1 else 'workers'} {_ranges(workers)}: {state}"
        for state, workers in by_state.items()
    )


def _ranges(numbers: list[int]) -> str:
    """`0-2, 5` for [0, 1, 2, 5] (sorted, distinct)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


class LogLines:
    """Periodic lines for non-interactive output: at most one per `every_s`, and the last."""

    def __init__(self, stream: TextIO, every_s: float = 10.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.last = -math.inf  # the first snapshot is printed at once
        self.finished = False

    def __call__(self, state: BuildProgress) -> None:
        now = time.monotonic()
        finished = state.contexts is None and state.done >= state.total
        if now - self.last >= self.every_s or (finished and not self.finished):
            self.last = now
            self.finished = finished
            print(describe(state), file=self.stream, flush=True)


@contextmanager
def progress_display(
    label: str, stream: TextIO | None = None, every_s: float = 10.0
) -> Iterator[LogLines | BarDisplay]:
    """A callable taking `Progress` snapshots: a rich bar on a terminal, else `LogLines`; on
    `stream`, or on whatever `sys.stderr` is at the call (not at import: tests replace it)."""
    out: TextIO = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield LogLines(out, every_s)
        return
    with Progress(
        TextColumn(label),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[workers]}"),
        console=Console(file=out),
    ) as bar:
        yield BarDisplay(bar)


class BarDisplay:
    """One bar per phase, each added when its first snapshot comes (so no bar shows `0/?`): the
    activation contexts' windows, then the prompts."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, state: BuildProgress) -> None:
        if state.contexts is not None:
            done, total = state.contexts
            self._update("activation contexts (windows)", total, done, rate="", workers="")
            return
        self._update(
            "prompts",
            state.total,
            state.done,
            rate=f"{state.rate:.2f} prompts/s",
            workers=describe_workers(state.workers),
        )

    def _update(self, phase: str, total: int, done: int, *, rate: str, workers: str) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total, rate="", workers="")
        self.bar.update(self.tasks[phase], total=total, completed=done, rate=rate, workers=workers)
