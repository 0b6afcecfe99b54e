"""Building a database: once-per-database work, then the prompts on one or more workers.

The build is resumable by prompt identity: prompts already stored are skipped before any compute,
so rerunning an interrupted command finishes exactly the set an uninterrupted run makes.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from locattr import __version__
from locattr.compute import LoadedRun, load_run
from locattr.demo import demo_run_path
from locattr.generate.contexts import compute_contexts
from locattr.generate.options import DEFAULT_N_CTX, GenerateError, GenerateOptions
from locattr.generate.prompts import PromptPlan, plan_prompts, resolve_n_ctx, vocab_size
from locattr.generate.text import TokenText
from locattr.generate.workers import (
    Event,
    Stored,
    WorkerFailed,
    WorkerReport,
    WorkerState,
    deal,
    run_worker,
    run_worker_processes,
    stores_inputs,
    worker_devices,
)
from locattr.storage import LocalAttrDB, resolve_target
from locattr.storage.codec import value_encoding_label
from locattr.storage.engine import DatabaseTarget
from locattr.storage.provenance import VALUE_PRECISION_KEY, first_difference


@dataclass
class Progress:
    """A snapshot for progress displays: this shard's prompts stored so far, of `total`; while
    the activation contexts are computed (before any prompt), `contexts` = (windows done, of)."""

    total: int
    done: int
    started_at: float = field(default_factory=time.monotonic)
    added: int = 0
    workers: dict[int, str] = field(default_factory=dict)
    contexts: tuple[int, int] | None = None

    @property
    def rate(self) -> float:
        """Prompts added per second since the workers started."""
        return self.added / max(time.monotonic() - self.started_at, 1e-9)

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def apply(self, event: Event) -> None:
        match event:
            case Stored(worker=worker, n=n):
                self.done += n
                self.added += n
                self.workers[worker] = "computing"
            case WorkerState(worker=worker, state=state):
                self.workers[worker] = state
            case WorkerFailed(worker=worker):
                self.workers[worker] = "failed"
            case WorkerReport(worker=worker):
                self.workers[worker] = "done"


@dataclass(frozen=True)
class GenerateResult:
    added: int
    skipped: int
    wall_s: float
    contexts_s: float
    reports: list[WorkerReport]
    per_worker: list[int]
    """Prompts each worker added, in worker order (zeros when nothing was left to do)."""
    n_ctx: int = DEFAULT_N_CTX
    """Tokens per prompt: as asked, else the database's (when extending one), else the default
    or the model's context where shorter."""
    n_ctx_from_model: bool = False
    """No `n_ctx` was asked and the model's context, shorter than the default, was taken."""

    @property
    def db_wait_share(self) -> float:
        """Mean over workers of the fraction of their wall time not spent computing: waiting
        for the database (writes overlap the next batch's compute, so only what they do not
        hide counts)."""
        return self._mean(lambda r: max(r.wall_s - r.compute_s, 0.0) / max(r.wall_s, 1e-9))

    @property
    def db_busy_share(self) -> float:
        """Mean over workers of the fraction of their wall time their writer thread was busy."""
        return self._mean(lambda r: r.db_s / max(r.wall_s, 1e-9))

    def _mean(self, of: Callable[[WorkerReport], float]) -> float:
        return sum(of(r) for r in self.reports) / len(self.reports) if self.reports else 0.0


def resolve_model(model: str) -> str:
    """`demo` names the run shipped with locattr; anything else goes to `load_run` as is."""
    return str(demo_run_path()) if model == "demo" else model


def generate(
    options: GenerateOptions, progress: Callable[[Progress], None] | None = None
) -> GenerateResult:
    """Compute and store graphs until the database holds this shard's share of the prompts.

    Checks everything it can (devices, model, prompts, output) before any compute; the
    database's provenance must match (same run, config and thresholds) or the call is refused.
    A SQLite file this call creates is removed again when the call fails (or is interrupted)
    before it stored a prompt or the activation contexts, so a failure leaves no empty database
    behind; an existing database is never removed.
    """
    with _removed_if_left_empty(resolve_target(options.output)):
        return _generate(options, progress)


def _generate(
    options: GenerateOptions, progress: Callable[[Progress], None] | None
) -> GenerateResult:
    started = time.monotonic()
    devices = worker_devices(options)
    with LocalAttrDB(options.output) as existing:  # an unusable output fails now, not later
        built_n_ctx = existing.get_meta().get("n_ctx")
    model_path = resolve_model(options.model)
    run = load_run(model_path, devices[0], n_blocks=options.n_blocks)
    # Extending a database without --n-ctx continues with its prompt length, whatever the
    # default was when it was built.
    asked = options.n_ctx if options.n_ctx is not None else built_n_ctx
    n_ctx = resolve_n_ctx(asked, run)
    n_ctx_from_model = asked is None and n_ctx < DEFAULT_N_CTX
    options = replace(options, n_ctx=n_ctx)
    plan = plan_prompts(options, run, n_ctx)
    mine = [p for p in plan.prompts if options.shard.owns(p.index)]

    def show(state: Progress) -> None:
        if progress is not None:
            progress(state)

    with LocalAttrDB(options.output) as db:
        _check_provenance(db, provenance(options, run, plan))
        db.register_layers({p: run.model.components(p).C for p in run.model.module_paths})
        stored = db.existing_identities([p.identity for p in mine])
        todo = [p for p in mine if p.identity not in stored]
        state = Progress(total=len(mine), done=len(mine) - len(todo))

        def on_windows(done: int, total: int) -> None:
            state.contexts = (done, total)
            show(state)

        # The vocabulary first: contexts are stored leaving their tokens to it.
        if run.tokenizer is not None and db.get_vocabulary() is None:
            db.set_vocabulary(TokenText(run.tokenizer).vocabulary(vocab_size(run)))
        contexts_s = _ensure_contexts(db, run, plan, options, on_windows)
    state.contexts, state.started_at = None, time.monotonic()

    def on_event(event: Event) -> None:
        state.apply(event)
        show(state)

    reports: list[WorkerReport] = []
    if todo and len(devices) == 1:
        reports = [run_worker(run, todo, options, 0, on_event)]
    elif todo:
        del run  # the workers load their own copies; free this one's device memory first
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shares = deal(todo, len(devices))
        reports = run_worker_processes(model_path, options, devices, shares, on_event)
    with LocalAttrDB(options.output) as db:
        db.build_postings()
    return GenerateResult(
        added=sum(r.added for r in reports),
        skipped=len(mine) - len(todo),
        wall_s=time.monotonic() - started,
        contexts_s=contexts_s,
        reports=reports,
        per_worker=[r.added for r in reports] if reports else [0] * len(devices),
        n_ctx=n_ctx,
        n_ctx_from_model=n_ctx_from_model,
    )


@contextmanager
def _removed_if_left_empty(target: DatabaseTarget) -> Iterator[None]:
    """Remove the SQLite file (and its -wal, -shm, -journal) that the block creates, if the
    block raises while the file holds neither prompts nor activation contexts: there is nothing
    in it to resume from, and an empty database would pass for a finished one."""
    path = target.sqlite_path
    if path is None or path.exists():
        yield
        return
    try:
        yield
    except BaseException:
        if path.exists() and _holds_nothing(path):
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise


def _holds_nothing(path: Path) -> bool:
    with LocalAttrDB(path, readonly=True) as db:
        return db.get_prompt_count() == 0 and db.get_meta().get("activation_contexts") is None


def _ensure_contexts(
    db: LocalAttrDB,
    run: LoadedRun,
    plan: PromptPlan,
    options: GenerateOptions,
    on_windows: Callable[[int, int], None],
) -> float:
    """Compute and store the activation contexts unless the database has them; seconds taken.
    `on_windows(done, total)` follows the windows as they are computed."""
    if db.get_meta().get("activation_contexts") is not None or not plan.context_windows:
        return 0.0
    started = time.monotonic()
    total = len(plan.context_windows)
    on_windows(0, total)
    contexts = compute_contexts(
        run, plan.context_windows, progress=lambda done: on_windows(done, total)
    )
    db.set_activation_contexts(contexts)
    db.set_meta(
        {
            "activation_contexts": {
                "windows": len(plan.context_windows),
                "components": len(contexts),
                "importance_threshold": 0.1,
            }
        }
    )
    return time.monotonic() - started


def provenance(options: GenerateOptions, run: LoadedRun, plan: PromptPlan) -> dict[str, object]:
    """What every graph in the database was computed from; a database holds one of these.

    `inputs` and `outputs` say whether the graphs hold `wte` and `output` nodes (what was
    stored, not what was asked for: a run without a `wte` pseudo-layer stores no inputs); the
    output threshold is None without outputs, where it has no effect. `value_precision` is how
    the graphs store edge values (a step, or "float32"): every write to the database follows it.
    `n_blocks` is the block limit in effect (`LoadedRun.n_blocks`: None when every decomposed
    layer is in the graphs), so a limit equal to the model's depth matches no limit.
    """
    config_bytes = (run.run_dir / "final_config.yaml").read_bytes()
    return {
        "run": options.model,
        "checkpoint": run.checkpoint.name,
        "config_digest": hashlib.sha256(config_bytes).hexdigest(),
        "ci_threshold": options.ci_threshold,
        "attr_threshold": options.attr_threshold,
        "n_ctx": options.n_ctx,
        "n_blocks": run.n_blocks,
        "context_windows": options.context_windows if options.prompts_file is None else None,
        "inputs": stores_inputs(options, run),
        "outputs": options.include_outputs,
        "output_prob_threshold": options.output_prob_threshold if options.include_outputs else None,
        "mode": options.mode,
        VALUE_PRECISION_KEY: value_encoding_label(options.value_precision),
        "seed": options.seed,
        "dataset": plan.dataset,
        "versions": {
            "locattr": __version__,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "git": _git_revision(),
        },
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _check_provenance(db: LocalAttrDB, wanted: dict[str, object]) -> None:
    difference = first_difference(db.get_meta(), wanted)
    if difference is not None:
        key, stored = difference.key, difference.existing
        raise GenerateError(
            f"{db.target.display} was built with {key}={stored!r}, not {difference.other!r}: "
            f"write to a new --output, or {_same_setting(key, stored)}"
        )
    db.set_meta(wanted)


def _same_setting(key: str, stored: object) -> str:
    """How to ask for the setting a database was built with, where one flag gives it."""
    match key:
        case "inputs" | "outputs":
            flag = f"--no-{key}"
            return f"pass {flag}" if stored is False else f"rerun without {flag}"
        case "output_prob_threshold":
            return f"pass --output-prob-threshold {stored}"
        case "value_precision":
            return f"pass --value-precision {stored}"
        case "mode":
            return f"pass --mode {stored}"
        case "n_ctx":
            return f"pass --n-ctx {stored}"
        case "n_blocks":
            return "rerun without --n-blocks" if stored is None else f"pass --n-blocks {stored}"
        case _:
            return "rerun with the original settings"


def _git_revision() -> str | None:
    """The source checkout's commit, when locattr runs from one."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None
