"""Building a database: prompts in, graphs and the inverted index out (one process).

The loop is resumable by prompt identity: prompts already stored are skipped before any compute,
so rerunning an interrupted command finishes the same set of prompts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch

from locattr import __version__
from locattr.compute import LoadedRun, compute_graphs, load_run
from locattr.demo import MAX_N_CTX, demo_prompts, demo_run_path
from locattr.errors import LocattrError
from locattr.storage import LocalAttrDB, PromptRecord, identity_for_dataset, identity_for_tokens


class GenerateError(LocattrError):
    """Arguments or inputs that locattr-generate cannot use as given."""


@dataclass(frozen=True)
class Prompt:
    identity: str
    token_ids: list[int]
    source: dict[str, object]


@dataclass(frozen=True)
class GenerateOptions:
    model: str
    output: str
    n_prompts: int
    n_ctx: int = 32
    seed: int = 0
    ci_threshold: float = 1e-6
    attr_threshold: float = 1e-4
    batch_size: int = 4
    device: str = "cpu"
    prompts_file: Path | None = None
    keep_graphs: bool = True


def resolve_model(model: str) -> str:
    """`demo` names the run shipped with locattr; anything else goes to `load_run` as is."""
    return str(demo_run_path()) if model == "demo" else model


def demo_corpus_prompts(n: int, n_ctx: int, seed: int) -> list[Prompt]:
    """Windows of the demo grammar's held-out split, identified by their window index."""
    if not 0 < n_ctx <= MAX_N_CTX:
        raise GenerateError(f"--n-ctx must be between 1 and {MAX_N_CTX} for the demo model")
    return [
        Prompt(
            identity_for_dataset("demo-grammar", f"heldout-seed{seed}-ctx{n_ctx}", i),
            ids,
            {
                "dataset": "demo-grammar",
                "split": "heldout",
                "seed": seed,
                "index": i,
            },
        )
        for i, ids in enumerate(demo_prompts(n, n_ctx, seed))
    ]


def file_prompts(path: Path, run: LoadedRun, n: int, n_ctx: int) -> list[Prompt]:
    """The first `n` lines of a JSONL file of ``{"text": ...}`` or ``{"token_ids": [...]}``."""
    if not path.is_file():
        raise GenerateError(f"prompts file {path} does not exist")
    prompts: list[Prompt] = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if len(prompts) == n:
            break
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise GenerateError(f"{path}:{line_number} is not JSON: {error}") from error
        token_ids = _token_ids(record, run, f"{path}:{line_number}")[:n_ctx]
        prompts.append(
            Prompt(
                identity_for_tokens(token_ids), token_ids, {"file": path.name, "line": line_number}
            )
        )
    return prompts


def _token_ids(record: object, run: LoadedRun, where: str) -> list[int]:
    match record:
        case {"token_ids": list(ids)} if ids and all(isinstance(i, int) for i in ids):
            return ids
        case {"text": str(text)} if text.strip():
            return [int(i) for i in run.tokenizer.encode(text, add_special_tokens=False)]
        case _:
            raise GenerateError(
                f'{where}: expected {{"text": "..."}} or {{"token_ids": [1, 2, ...]}} (non-empty)'
            )


def provenance(options: GenerateOptions, run: LoadedRun) -> dict[str, object]:
    """What every graph in the database was computed from; a database holds one of these."""
    config_bytes = (run.run_dir / "final_config.yaml").read_bytes()
    return {
        "run": options.model,
        "checkpoint": run.checkpoint.name,
        "config_digest": hashlib.sha256(config_bytes).hexdigest(),
        "ci_threshold": options.ci_threshold,
        "attr_threshold": options.attr_threshold,
        "n_ctx": options.n_ctx,
        "versions": {"locattr": __version__, "torch": torch.__version__},
    }


def generate(options: GenerateOptions, progress: Callable[[int, int], None] | None = None) -> int:
    """Compute and store graphs until the database holds the requested prompts.

    Returns how many prompts this call added. Meta from an earlier build must match (same run,
    config and thresholds), or the call is refused before any compute.
    """
    run = load_run(resolve_model(options.model), options.device)
    prompts = (
        file_prompts(options.prompts_file, run, options.n_prompts, options.n_ctx)
        if options.prompts_file is not None
        else demo_corpus_prompts(options.n_prompts, options.n_ctx, options.seed)
        if options.model == "demo"
        else None
    )
    if prompts is None:
        raise GenerateError(
            "this run needs prompts: pass --prompts-file FILE.jsonl (dataset streaming comes later)"
        )
    with LocalAttrDB(options.output) as db:
        _check_provenance(db, provenance(options, run))
        db.register_layers({p: run.model.components(p).C for p in run.model.module_paths})
        stored = db.existing_identities([p.identity for p in prompts])
        todo = [p for p in prompts if p.identity not in stored]
        added = 0
        for batch in _batches(todo, options.batch_size):
            records = _records(run, batch, options)
            added += sum(new_id is not None for new_id in db.add_prompts(records))
            db.checkpoint()
            if progress is not None:
                progress(len(prompts) - len(todo) + added, len(prompts))
        db.build_postings()
    return added


def _check_provenance(db: LocalAttrDB, wanted: dict[str, object]) -> None:
    stored = db.get_meta()
    for key in ("run", "config_digest", "ci_threshold", "attr_threshold", "n_ctx"):
        if key in stored and stored[key] != wanted[key]:
            raise GenerateError(
                f"{db.target.display} was built with {key}={stored[key]!r}, not {wanted[key]!r}: "
                "write to a new --output, or rerun with the original settings"
            )
    db.set_meta(wanted)


def _batches(prompts: Sequence[Prompt], size: int) -> Iterator[list[Prompt]]:
    """Batches of equal-length prompts (one forward each)."""
    by_length: dict[int, list[Prompt]] = {}
    for prompt in prompts:
        by_length.setdefault(len(prompt.token_ids), []).append(prompt)
    for group in by_length.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _records(run: LoadedRun, batch: list[Prompt], options: GenerateOptions) -> list[PromptRecord]:
    graphs = compute_graphs(
        run,
        [p.token_ids for p in batch],
        ci_threshold=options.ci_threshold,
        attr_threshold=options.attr_threshold,
    )
    return [
        PromptRecord(
            identity=prompt.identity,
            token_ids=prompt.token_ids,
            tokens=_token_strings(run, prompt.token_ids),
            graph=graph,
            source=prompt.source,
            keep_graph=options.keep_graphs,
        )
        for prompt, graph in zip(batch, graphs, strict=True)
    ]


def _token_strings(run: LoadedRun, token_ids: list[int]) -> list[str]:
    """Display strings: each token decoded alone, with a leading space between word tokens."""
    pieces = [run.tokenizer.decode([i]) for i in token_ids]
    return [p if i == 0 or p[:1] in ".,!?;:'\")]}" else f" {p}" for i, p in enumerate(pieces)]
