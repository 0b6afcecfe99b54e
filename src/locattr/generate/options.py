"""What a `locattr-generate` call asks for, and the error it raises for unusable input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locattr.errors import LocattrError
from locattr.graph import AttributionMode
from locattr.storage.codec import (
    DEFAULT_VALUE_ENCODING,
    Quantized,
    ValueEncoding,
    parse_value_encoding,
)


class GenerateError(LocattrError):
    """Arguments or inputs that locattr-generate cannot use as given."""


DEFAULT_N_CTX = 64
"""Tokens per prompt when `--n-ctx` is not given and the model's context allows (the original's
documented default)."""


@dataclass(frozen=True)
class Shard:
    """The `index`-th (0-based) of `count` disjoint slices of the prompt indices."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N` with 1 <= K <= N, as users write it (1-based)."""
        k, slash, n = text.partition("/")
        if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise GenerateError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/8")
        return cls(int(k) - 1, int(n))

    def owns(self, prompt_index: int) -> bool:
        return prompt_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


def parse_value_precision(text: str) -> ValueEncoding:
    """`--value-precision`: `float32` (lossless), `float16`, or an absolute step such as 1e-6."""
    try:
        return parse_value_encoding(text)
    except ValueError:
        raise GenerateError(
            f"--value-precision {text!r}: expected float32, float16 or a step > 0 such as 1e-6"
        ) from None


@dataclass(frozen=True)
class DatasetChoice:
    """Overrides of the run's own dataset (None: take the run's task config)."""

    name: str | None = None
    split: str | None = None
    column: str | None = None
    streaming: bool | None = None


@dataclass(frozen=True)
class GenerateOptions:
    """One build (or extension) of a database; defaults are those of `locattr-generate`."""

    model: str
    output: str
    n_prompts: int
    n_ctx: int | None = None
    """Tokens per prompt; None: `DEFAULT_N_CTX`, or the model's context where that is shorter
    (`generate` resolves it once the model is loaded)."""
    n_blocks: int | None = None
    """Decompose and attribute only the first N transformer blocks' layers (the original's
    `--n_blocks`); None: every decomposed layer."""
    seed: int = 0
    ci_threshold: float = 1e-6
    attr_threshold: float = 1e-4
    batch_size: int = 4
    device: str = "auto"
    n_workers: int = 1
    shard: Shard = Shard()
    prompts_file: Path | None = None
    dataset: DatasetChoice = DatasetChoice()
    keep_graphs: bool = True
    context_windows: int = 512
    """Windows (disjoint from the prompts) the activation contexts are computed over."""
    include_inputs: bool = True
    """Store the token-embedding input nodes (pseudo-layer `wte`), where the run has one."""
    include_outputs: bool = True
    """Store the output nodes (pseudo-layer `output`): tokens predicted with at least
    `output_prob_threshold` probability."""
    output_prob_threshold: float = 0.01
    mode: AttributionMode = "ci_masked"
    """Which graph definition (`compute_graph`'s `mode`); a database holds graphs of one."""
    value_precision: ValueEncoding = DEFAULT_VALUE_ENCODING
    """How the graphs store edge values: `Quantized(step)` keeps each within step / 2 (the
    original system rounded to 6 decimals: step 1e-6); `ValueDtype.FLOAT32` keeps them exactly."""

    def __post_init__(self) -> None:
        if self.n_blocks is not None and self.n_blocks < 1:
            raise GenerateError(f"--n-blocks {self.n_blocks}: expected at least 1")
        if not 0 < self.output_prob_threshold <= 1:
            raise GenerateError(
                f"--output-prob-threshold {self.output_prob_threshold!r}: expected a "
                "probability in (0, 1], e.g. 0.01"
            )
        precision = self.value_precision
        if isinstance(precision, Quantized) and precision.step > self.attr_threshold:
            raise GenerateError(
                f"--value-precision {precision.step:g} is coarser than --attr-threshold "
                f"{self.attr_threshold:g}: stored edges could round to 0; pass a step of at most "
                "the threshold (default 1e-6), or float32"
            )
