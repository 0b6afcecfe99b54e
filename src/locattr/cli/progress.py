"""One overall progress display for `locattr-generate`: a live bar on a terminal, periodic
lines in a log (SLURM, CI), both with prompts/s, ETA and each worker's state."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from locattr.generate import Progress as BuildProgress


def describe(state: BuildProgress) -> str:
    """`37/100 prompts, 2.41/s, ETA 26 s; workers: 0 computing, 1 loading on cuda:1`."""
    eta = state.eta_s
    workers = ", ".join(f"{i} {s}" for i, s in sorted(state.workers.items()))
    return (
        f"{state.done}/{state.total} prompts, {state.rate:.2f}/s"
        + (f", ETA {eta:.0f} s" if eta is not None else "")
        + (f"; workers: {workers}" if workers else "")
    )


class LogLines:
    """Periodic lines for non-interactive output: at most one per `every_s`, and the last."""

    def __init__(self, stream: TextIO, every_s: float = 10.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.last = 0.0
        self.finished = False

    def __call__(self, state: BuildProgress) -> None:
        now = time.monotonic()
        finished = state.done >= state.total
        if now - self.last >= self.every_s or (finished and not self.finished):
            self.last = now
            self.finished = finished
            print(describe(state), file=self.stream, flush=True)


@contextmanager
def progress_display(
    label: str, stream: TextIO = sys.stderr, every_s: float = 10.0
) -> Iterator[LogLines | BarDisplay]:
    """A callable taking `Progress` snapshots: a rich bar on a terminal, else `LogLines`."""
    if not stream.isatty():
        yield LogLines(stream, every_s)
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[workers]}"),
        console=Console(file=stream),
    ) as bar:
        yield BarDisplay(bar)


class BarDisplay:
    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task = bar.add_task("", total=None, rate="", workers="")

    def __call__(self, state: BuildProgress) -> None:
        workers = " ".join(f"[{i}] {s}" for i, s in sorted(state.workers.items()))
        self.bar.update(
            self.task,
            total=state.total,
            completed=state.done,
            rate=f"{state.rate:.2f} prompts/s",
            workers=workers,
        )
