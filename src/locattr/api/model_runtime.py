"""The held model's side of the interactive endpoints (imports torch; loaded only with --model):
tokenizing and checking prompts, computing graphs and interventions.

Every method that computes runs in the compute queue's worker thread, one at a time; the
checks run on the event loop before a request queues, so bad input never waits for the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from locattr.compute import LoadedRun, compute_graph, load_run
from locattr.compute.interventions import (
    Intervention,
    InterventionMode,
    PromptEffects,
    intervention_log_probs,
    prompt_effects,
)
from locattr.errors import LocattrError
from locattr.generate import resolve_model
from locattr.generate.prompts import model_context, vocab_size
from locattr.generate.text import TokenText
from locattr.graph import OUTPUT_LAYER, WTE_LAYER, Graph
from locattr.storage.keys import ComponentKey, parse_keys

GRAPH_CHUNK_BYTES = 256 << 20
"""Working memory of one graph's batched backward passes (the compute layer's default is 1 GiB,
sized for a build that owns the machine)."""
DEFAULT_CI_THRESHOLD = 1e-6
DEFAULT_ATTR_THRESHOLD = 1e-4
DEFAULT_OUTPUT_PROB_THRESHOLD = 0.01


class PromptError(LocattrError):
    """A prompt, key or position the held model cannot take."""


@dataclass(frozen=True)
class GraphSettings:
    """What a graph is computed with (part of its cache key)."""

    ci_threshold: float
    attr_threshold: float
    include_wte: bool
    include_output: bool
    output_prob_threshold: float


@dataclass
class ModelRuntime:
    """A loaded run and what requests need to know about it."""

    run: LoadedRun
    model: str
    """The run as given (`demo`, a path, `wandb:...`)."""
    text: TokenText
    vocabulary: list[str]
    """Token id -> text as it reads after another token (labels of predicted tokens)."""
    n_ctx: int | None
    """The longest prompt the model takes, when its config says."""
    layer_sizes: dict[str, int]
    """Decomposed module path -> its number of components C, in model order."""
    config_digest: str

    @property
    def device(self) -> str:
        return str(self.run.device)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def unknown_token_id(self) -> int | None:
        tokenizer = self.run.tokenizer
        unknown = getattr(tokenizer, "unk_token_id", None) if tokenizer is not None else None
        return unknown if isinstance(unknown, int) else None

    def check_database(self, meta: Mapping[str, Any], display: str) -> None:
        """Refuse a database built from another run: its keys would name other components."""
        digest = meta.get("config_digest")
        if digest is not None and digest != self.config_digest:
            raise LocattrError(
                f"{display} was built from run {meta.get('run')!r}, whose final_config.yaml "
                f"differs from that of the model {self.model!r}: serve it with --model "
                f"{meta.get('run')}"
            )

    def graph_settings(
        self, meta: Mapping[str, Any], ci_threshold: float | None, attr_threshold: float | None
    ) -> GraphSettings:
        """The database's recorded settings (its graphs' nodes, thresholds), where not given."""

        def recorded(key: str, default: float) -> float:
            value = meta.get(key)
            return float(value) if isinstance(value, int | float) else default

        output_threshold = recorded("output_prob_threshold", DEFAULT_OUTPUT_PROB_THRESHOLD)
        return GraphSettings(
            ci_threshold=recorded("ci_threshold", DEFAULT_CI_THRESHOLD)
            if ci_threshold is None
            else ci_threshold,
            attr_threshold=recorded("attr_threshold", DEFAULT_ATTR_THRESHOLD)
            if attr_threshold is None
            else attr_threshold,
            include_wte=bool(meta.get("inputs", False)) and self.run.structure.has_wte,
            include_output=bool(meta.get("outputs", False)),
            output_prob_threshold=output_threshold,
        )

    def encode(self, text: str) -> tuple[list[int], int]:
        """The text's token ids (no special tokens, as locattr-generate tokenizes prompts) and
        how many are the tokenizer's unknown token."""
        tokenizer = self.run.tokenizer
        if tokenizer is None:
            raise PromptError("this run has no tokenizer: send token_ids instead of text")
        ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
        if not ids:
            raise PromptError("the text has no tokens: send some words")
        self.check_token_ids(ids)
        unknown = self.unknown_token_id
        return ids, sum(i == unknown for i in ids) if unknown is not None else 0

    def check_token_ids(self, ids: Sequence[int]) -> None:
        if not ids:
            raise PromptError("the prompt is empty: send at least one token")
        if self.n_ctx is not None and len(ids) > self.n_ctx:
            raise PromptError(
                f"the prompt has {len(ids)} tokens, more than the model's context of "
                f"{self.n_ctx}: shorten it"
            )
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise PromptError(
                f"token id {bad} is outside this model's vocabulary (0..{self.vocab_size - 1})"
            )

    def unknown_count(self, ids: Sequence[int]) -> int:
        unknown = self.unknown_token_id
        return sum(i == unknown for i in ids) if unknown is not None else 0

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Display strings, as stored prompts' tokens are made."""
        return self.text.strings(ids)

    def intervention(
        self,
        mode: InterventionMode,
        keys: Sequence[str],
        positions: Sequence[int] | None,
        n_tokens: int | None,
    ) -> Intervention:
        """Parse and check keys (decomposed layers of this model, indices below their C) and
        positions (below `n_tokens` when given)."""
        components: dict[str, list[int]] = {}
        for key in parse_keys(keys):  # malformed keys: ComponentKeyError (422)
            components.setdefault(self._layer_of(key), []).append(key.index)
        if positions is not None and n_tokens is not None:
            past = next((p for p in positions if p >= n_tokens), None)
            if past is not None:
                raise PromptError(
                    f"position {past} is past the prompt's {n_tokens} tokens "
                    f"(positions count from 0)"
                )
        return Intervention(
            mode=mode,
            components={path: tuple(indices) for path, indices in components.items()},
            positions=None if positions is None else tuple(sorted(set(positions))),
        )

    def _layer_of(self, key: ComponentKey) -> str:
        size = self.layer_sizes.get(key.layer)
        if size is None:
            if key.layer in (WTE_LAYER, OUTPUT_LAYER):
                raise PromptError(
                    f"{key} is an input or output node, not a component: interventions ablate or "
                    "keep components of decomposed layers"
                )
            raise PromptError(
                f"unknown component {key}: this model has no layer {key.layer!r} (its layers: "
                f"{', '.join(self.layer_sizes)})"
            )
        if key.index >= size:
            raise PromptError(
                f"unknown component {key}: layer {key.layer} has {size} components (0..{size - 1})"
            )
        return key.layer

    def graph(self, ids: Sequence[int], settings: GraphSettings) -> Graph:
        """The prompt's graph, as locattr-generate computes it (worker thread)."""
        return compute_graph(
            self.run,
            ids,
            ci_threshold=settings.ci_threshold,
            attr_threshold=settings.attr_threshold,
            include_wte=settings.include_wte,
            include_output=settings.include_output,
            output_prob_threshold=settings.output_prob_threshold,
            chunk_bytes=GRAPH_CHUNK_BYTES,
        )

    def effects(
        self, batch: Sequence[Sequence[int]], intervention: Intervention, top_k: int
    ) -> list[PromptEffects]:
        """An intervention on equal-length prompts, one `PromptEffects` each (worker thread)."""
        tokens = torch.as_tensor(batch, dtype=torch.long, device=self.run.device)
        log_probs = intervention_log_probs(self.run.model, tokens, intervention)
        return prompt_effects(log_probs, tokens, top_k)


def load_runtime(model: str, device: str) -> ModelRuntime:
    """Load a run as `locattr-generate --model` takes it (`demo`, a run directory, a
    checkpoint, `wandb:...`)."""
    run = load_run(resolve_model(model), device)
    text = TokenText(run.tokenizer)
    model_obj = run.model
    return ModelRuntime(
        run=run,
        model=model,
        text=text,
        vocabulary=text.vocabulary(vocab_size(run)),
        n_ctx=model_context(run),
        layer_sizes={path: model_obj.components(path).C for path in model_obj.module_paths},
        config_digest=hashlib.sha256((run.run_dir / "final_config.yaml").read_bytes()).hexdigest(),
    )
