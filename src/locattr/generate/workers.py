"""Worker processes: each loads the run once on its device, computes its prompts, writes them.

Prompts are dealt out before any worker starts (by position in the list of this shard's prompts
still to do, so every worker of every shard gets an equal share), so no worker reads another's.
Every worker writes its own batched transactions through the storage layer (SQLite WAL with
`BEGIN IMMEDIATE` and a busy timeout serialises them; PostgreSQL takes an advisory lock), so a
worker that dies loses at most its batch in flight. Workers die with the main process
(`PR_SET_PDEATHSIG`), so a killed command leaves nothing running that could write later.
Workers ignore SIGINT: a Ctrl-C reaches the main process, which stops them (their committed
batches stay; a rerun resumes).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from locattr.compute import LoadedRun, compute_graphs, load_run
from locattr.errors import LocattrError
from locattr.generate.options import GenerateError, GenerateOptions
from locattr.generate.prompts import Prompt, equal_length_batches
from locattr.generate.text import TokenText
from locattr.memory import keep_freed_memory
from locattr.storage import LocalAttrDB, PromptRecord


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did; times in seconds of its own wall clock."""

    worker: int
    device: str
    added: int
    compute_s: float
    db_s: float
    wall_s: float


@dataclass(frozen=True)
class Stored:
    """Progress event: `worker` stored `n` more prompts."""

    worker: int
    n: int


@dataclass(frozen=True)
class WorkerState:
    worker: int
    state: str


@dataclass(frozen=True)
class WorkerFailed:
    worker: int
    message: str


Event = Stored | WorkerState | WorkerFailed | WorkerReport


def worker_devices(options: GenerateOptions) -> list[str]:
    """One device per worker: `cuda:i` for worker i when GPUs are used, else `cpu` each."""
    n, device = options.n_workers, options.device
    if n < 1:
        raise GenerateError("--n-gpus must be at least 1")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not use_cuda:
        if device not in ("auto", "cpu"):
            raise GenerateError(f"--device {device!r}: expected auto, cpu, cuda or cuda:i")
        return ["cpu"] * n
    available = torch.cuda.device_count()
    if available == 0:
        raise GenerateError(
            f"--device {device} asks for CUDA, but no GPU is visible here: use --device cpu"
        )
    if ":" in device:
        if n > 1:
            raise GenerateError("--n-gpus above 1 takes --device cuda (worker i uses cuda:i)")
        return [device]
    if n > available:
        raise GenerateError(
            f"--n-gpus {n}, but only {available} GPU(s) are visible: pass --n-gpus {available}"
        )
    return [f"cuda:{i}" for i in range(n)]


def deal(prompts: Sequence[Prompt], n_workers: int) -> list[list[Prompt]]:
    """Worker i gets every `n_workers`-th prompt of the list from position i: shares differ by
    at most one prompt. By position, not by prompt index: a shard already holds the indices of
    one residue modulo the shard count, which a deal modulo the worker count would not spread."""
    return [list(prompts[i::n_workers]) for i in range(n_workers)]


def run_worker(
    run: LoadedRun,
    prompts: Sequence[Prompt],
    options: GenerateOptions,
    worker: int,
    emit: Callable[[Event], None],
) -> WorkerReport:
    """Compute and store `prompts` in batches of `options.batch_size`, one transaction each.

    A writer thread stores batch i while batch i + 1 is computed (encoding and SQLite release
    the GIL), so a worker runs at the pace of the slower of the two, not their sum.
    """
    started = time.perf_counter()
    compute_s = 0.0
    keep_freed_memory()
    emit(WorkerState(worker, "computing"))
    text = TokenText(run.tokenizer)
    stall_after = _stall_after()
    handed = 0
    with LocalAttrDB(options.output) as db:
        writer = _Writer(db, worker, emit)
        writer.start()
        try:
            for batch in equal_length_batches(
                prompts, options.batch_size, lambda p: len(p.token_ids)
            ):
                if stall_after is not None and handed >= stall_after:
                    _stall()
                t0 = time.perf_counter()
                records = prompt_records(run, text, batch, options)
                compute_s += time.perf_counter() - t0
                writer.put(records)
                handed += len(records)
        finally:
            writer.finish()
    emit(WorkerState(worker, "done"))
    return WorkerReport(
        worker,
        str(run.device),
        writer.added,
        compute_s,
        writer.busy_s,
        time.perf_counter() - started,
    )


STALL_AFTER_ENV = "LOCATTR_TEST_STALL_AFTER"


def _stall_after() -> int | None:
    """A test hook: with `LOCATTR_TEST_STALL_AFTER=k` each worker hands at most k prompts (and
    whatever completes its batch) to its writer, then waits until it is interrupted or killed,
    so a test interrupts a build at a known point instead of racing it. Honoured only under
    pytest (which sets `PYTEST_CURRENT_TEST`, inherited by the commands a test starts)."""
    value = os.environ.get(STALL_AFTER_ENV)
    return int(value) if value and "PYTEST_CURRENT_TEST" in os.environ else None


def _stall() -> None:
    while True:
        time.sleep(3600)


class _Writer(threading.Thread):
    """Stores batches handed over by `put` in order; `finish` waits and re-raises its error."""

    def __init__(self, db: LocalAttrDB, worker: int, emit: Callable[[Event], None]) -> None:
        super().__init__(name=f"locattr-writer-{worker}", daemon=True)
        self.db, self.worker, self.emit = db, worker, emit
        self.batches: queue.Queue[list[PromptRecord] | None] = queue.Queue(maxsize=2)
        self.added = 0
        self.busy_s = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        while (records := self.batches.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure; nothing more is written
            try:
                start = time.perf_counter()
                self.added += sum(i is not None for i in self.db.add_prompts(records))
                self.db.checkpoint()
                self.busy_s += time.perf_counter() - start
                self.emit(Stored(self.worker, len(records)))
            except BaseException as error:  # handed to the computing thread by put/finish
                self.error = error

    def put(self, records: list[PromptRecord]) -> None:
        self._raise_error()
        self.batches.put(records)

    def finish(self) -> None:
        self.batches.put(None)
        self.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def stores_inputs(options: GenerateOptions, run: LoadedRun) -> bool:
    """Whether the graphs get `wte` nodes: asked for, and the run has that pseudo-layer (a run
    whose token embedding is itself decomposed has none: its components are the inputs)."""
    return options.include_inputs and run.structure.has_wte


def prompt_records(
    run: LoadedRun, text: TokenText, batch: Sequence[Prompt], options: GenerateOptions
) -> list[PromptRecord]:
    graphs = compute_graphs(
        run,
        [p.token_ids for p in batch],
        ci_threshold=options.ci_threshold,
        attr_threshold=options.attr_threshold,
        include_wte=stores_inputs(options, run),
        include_output=options.include_outputs,
        output_prob_threshold=options.output_prob_threshold,
        mode=options.mode,
    )
    return [
        PromptRecord(
            identity=prompt.identity,
            token_ids=prompt.token_ids,
            tokens=text.strings(prompt.token_ids),
            graph=graph,
            source=prompt.source,
            keep_graph=options.keep_graphs,
        )
        for prompt, graph in zip(batch, graphs, strict=True)
    ]


def run_worker_processes(
    model_path: str,
    options: GenerateOptions,
    devices: Sequence[str],
    shares: Sequence[Sequence[Prompt]],
    on_event: Callable[[Event], None],
) -> list[WorkerReport]:
    """One spawned process per device; returns their reports once all have ended.

    A failed worker does not stop the others: their prompts are committed, then the call raises
    `GenerateError` naming the first failure (a rerun resumes).
    """
    context = mp.get_context("spawn")
    events: Any = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    processes: list[BaseProcess] = [
        context.Process(
            target=_worker_main,
            args=(model_path, options, i, device, list(share), events, os.getpid(), threads),
            name=f"locattr-worker-{i}",
        )
        for i, (device, share) in enumerate(zip(devices, shares, strict=True))
    ]
    with _sigint_ignored():  # inherited: a terminal's Ctrl-C reaches the workers too
        for process in processes:
            process.start()
    reports: dict[int, WorkerReport] = {}
    failures: dict[int, str] = {}
    try:
        while any(p.is_alive() for p in processes) or not events.empty():
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                _note_silent_deaths(processes, reports, failures)
                continue
            match event:
                case WorkerReport():
                    reports[event.worker] = event
                case WorkerFailed():
                    failures[event.worker] = event.message
            on_event(event)
    except BaseException:  # Ctrl-C above all: stop the workers now rather than wait for them
        for process in processes:
            process.terminate()
        raise
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    _note_silent_deaths(processes, reports, failures)
    if failures:
        worker, message = min(failures.items())
        raise GenerateError(
            f"worker {worker} ({devices[worker]}) failed: {message}. The other workers' prompts "
            "are stored; rerun the same command to finish"
        )
    return [reports[i] for i in sorted(reports)]


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the block runs (only the main thread may set handlers: elsewhere,
    as when `generate` runs in a thread of another program, it changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _note_silent_deaths(
    processes: Sequence[BaseProcess], reports: dict[int, WorkerReport], failures: dict[int, str]
) -> None:
    """A worker that ended without a report or an error was killed (OOM killer, signal)."""
    for i, process in enumerate(processes):
        ended = process.exitcode is not None and process.exitcode != 0
        if ended and i not in reports and i not in failures:
            failures[i] = f"its process ended with exit code {process.exitcode}"


def _worker_main(
    model_path: str,
    options: GenerateOptions,
    worker: int,
    device: str,
    prompts: list[Prompt],
    events: Any,
    parent_pid: int,
    threads: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    _die_with_parent(parent_pid, worker)
    torch.set_num_threads(threads)
    try:
        events.put(WorkerState(worker, f"loading on {device}"))
        run = load_run(model_path, device, n_blocks=options.n_blocks)
        events.put(run_worker(run, prompts, options, worker, events.put))
    except LocattrError as error:
        events.put(WorkerFailed(worker, str(error)))
        raise SystemExit(1) from None
    except Exception as error:  # anything else is reported whole: the user must see it
        events.put(WorkerFailed(worker, f"{error!r}\n{traceback.format_exc()}"))
        raise SystemExit(1) from None


def _die_with_parent(parent_pid: int, worker: int) -> None:
    """Linux: receive SIGKILL when the parent dies, and show as `locattr-w<i>` in ps/top."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        libc.prctl(15, f"locattr-w{worker}".encode())  # PR_SET_NAME
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
