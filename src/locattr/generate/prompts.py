"""Where prompts come from: the demo grammar, a JSONL file, or the run's HF dataset.

Every source numbers its prompts 0..n-1 (the *prompt index*, which shards and workers split on)
and gives each a stable identity, so a rerun recognises what is already stored. Activation
contexts are computed over windows disjoint from the prompts (a file's own prompts excepted:
there the contexts come from the same prompts, which is all the text there is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import torch

from locattr.compute import LoadedRun
from locattr.datasets import DatasetSpec, dataset_windows
from locattr.demo import demo_context_windows, demo_prompts
from locattr.generate.options import DEFAULT_N_CTX, GenerateError, GenerateOptions
from locattr.storage import identity_for_dataset, identity_for_tokens

T = TypeVar("T")


@dataclass(frozen=True)
class Prompt:
    index: int
    identity: str
    token_ids: list[int]
    source: dict[str, object]


@dataclass(frozen=True)
class PromptPlan:
    """All `n_prompts` prompts of the build (every shard's), and the activation-context input."""

    prompts: list[Prompt]
    context_windows: list[list[int]]
    dataset: dict[str, object] = field(default_factory=dict)


def plan_prompts(options: GenerateOptions, run: LoadedRun, n_ctx: int) -> PromptPlan:
    """The prompts (`n_ctx` tokens each, from `resolve_n_ctx`) and context windows for this
    build; fails before any GPU work."""
    if options.prompts_file is not None:
        prompts = file_prompts(options.prompts_file, run, options.n_prompts, n_ctx)
        return PromptPlan(
            prompts, [p.token_ids for p in prompts], {"file": str(options.prompts_file)}
        )
    if options.model == "demo":
        return demo_plan(options, n_ctx)
    return dataset_plan(options, run, n_ctx)


def resolve_n_ctx(requested: int | None, run: LoadedRun) -> int:
    """`--n-ctx` as given, if the model takes it; not given, `DEFAULT_N_CTX` or the model's
    context where that is shorter."""
    limit = model_context(run)
    if requested is None:
        return DEFAULT_N_CTX if limit is None else min(DEFAULT_N_CTX, limit)
    if requested < 1 or (limit is not None and requested > limit):
        raise GenerateError(
            f"--n-ctx {requested} is outside this model's context (1..{limit}): pass a smaller "
            "--n-ctx"
        )
    return requested


def model_context(run: LoadedRun) -> int | None:
    """The longest sequence the target model takes, when its config says."""
    config = getattr(run.model.target_model, "config", None)
    limit = getattr(config, "block_size", None)
    return int(limit) if isinstance(limit, int) else None


def demo_plan(options: GenerateOptions, n_ctx: int) -> PromptPlan:
    """Held-out windows of the demo grammar as prompts; training-split windows for contexts."""
    split = f"heldout-seed{options.seed}-ctx{n_ctx}"
    prompts = [
        Prompt(
            i,
            identity_for_dataset("demo-grammar", split, i),
            ids,
            {"dataset": "demo-grammar", "split": "heldout", "seed": options.seed, "index": i},
        )
        for i, ids in enumerate(demo_prompts(options.n_prompts, n_ctx, options.seed))
    ]
    contexts = demo_context_windows(options.context_windows, n_ctx, options.seed)
    return PromptPlan(prompts, contexts, {"name": "demo-grammar", "split": "heldout"})


def file_prompts(path: Path, run: LoadedRun, n: int, n_ctx: int) -> list[Prompt]:
    """The first `n` lines of a JSONL file of ``{"text": ...}`` or ``{"token_ids": [...]}``."""
    if not path.is_file():
        raise GenerateError(f"prompts file {path} does not exist")
    prompts: list[Prompt] = []
    limit = vocab_size(run)
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if len(prompts) == n:
            break
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise GenerateError(f"{path}:{line_number} is not JSON: {error}") from error
        token_ids = _token_ids(record, run, limit, f"{path}:{line_number}")[:n_ctx]
        prompts.append(
            Prompt(
                len(prompts),
                identity_for_tokens(token_ids),
                token_ids,
                {"file": path.name, "line": line_number},
            )
        )
    return prompts


def equal_length_batches(
    items: Sequence[T], size: int, length: Callable[[T], int]
) -> Iterator[list[T]]:
    """Batches of at most `size` items of one length (one forward each), in order per length."""
    by_length: dict[int, list[T]] = {}
    for item in items:
        by_length.setdefault(length(item), []).append(item)
    for group in by_length.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def vocab_size(run: LoadedRun) -> int:
    """The model's logit width (one one-token forward)."""
    with torch.no_grad():
        return int(
            run.model(torch.zeros(1, 1, dtype=torch.long, device=run.device)).output.shape[-1]
        )


def _token_ids(record: object, run: LoadedRun, limit: int, where: str) -> list[int]:
    """A line's token ids; ids must be below `limit` (the model's vocabulary size)."""
    match record:
        case {"token_ids": list(ids)} if ids and all(isinstance(i, int) for i in ids):
            if not all(0 <= i < limit for i in ids):
                raise GenerateError(f"{where}: token ids must be in 0..{limit - 1} for this model")
            return ids
        case {"text": str(text)} if text.strip():
            return [int(i) for i in run.tokenizer.encode(text, add_special_tokens=False)]
        case _:
            raise GenerateError(
                f'{where}: expected {{"text": "..."}} or {{"token_ids": [1, 2, ...]}} (non-empty)'
            )


def dataset_spec(options: GenerateOptions, run: LoadedRun) -> DatasetSpec:
    """The run's own dataset (its task config), with the command line's overrides."""
    task = run.config.task_config
    choice = options.dataset
    return DatasetSpec(
        name=choice.name or task.dataset_name,
        split=choice.split or task.train_data_split,
        column=choice.column or task.column_name,
        is_tokenized=task.is_tokenized,
        streaming=task.streaming if choice.streaming is None else choice.streaming,
    )


def dataset_plan(options: GenerateOptions, run: LoadedRun, n_ctx: int) -> PromptPlan:
    """Windows [0, m) of the dataset for contexts, [m, m + n) as the prompts (m fixed per DB)."""
    if run.tokenizer is None:
        raise GenerateError("this run has no tokenizer, so it needs --prompts-file with token_ids")
    spec = dataset_spec(options, run)
    first = options.context_windows
    windows = list(
        dataset_windows(
            spec,
            run.tokenizer,
            n_ctx,
            options.seed,
            start=0,
            stop=first + options.n_prompts,
        )
    )
    split = f"{spec.split}-seed{options.seed}-ctx{n_ctx}"
    described: dict[str, Any] = {"name": spec.name, "split": spec.split, "column": spec.column}
    prompts = [
        Prompt(
            index - first,
            identity_for_dataset(spec.name, split, index),
            ids,
            {**described, "seed": options.seed, "index": index},
        )
        for index, ids in windows[first:]
    ]
    return PromptPlan(prompts, [ids for _, ids in windows[:first]], described)
