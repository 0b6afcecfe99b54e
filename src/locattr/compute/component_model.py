"""The SPD component model: a frozen target model whose decomposed modules can be replaced by
their components, masked per component, with component activations cached as gradient leaves.

State-dict layout (one place that knows it, with `ci_fns` and `components`):
`target_model.<name>`, `_components.<path-with-dashes>.{V,U[,bias]}`,
`_ci_fns.<path-with-dashes>.layers.<k>.{W,b}`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from locattr.compute.ci_fns import CiFn, make_ci_fn
from locattr.compute.components import Components, EmbeddingComponents, LinearComponents
from locattr.compute.config import ModuleInfo, SPDConfig
from locattr.compute.errors import LocattrComputeError
from locattr.compute.sigmoids import ci_functions

ModuleKind = Literal["linear", "conv1d", "embedding", "identity"]


class InsertedIdentity(nn.Module):
    """Identity inserted before a module, so that module's input can be decomposed too."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: Tensor) -> Tensor:
        return x


@dataclass(frozen=True)
class DecomposedModule:
    path: str
    kind: ModuleKind
    C: int
    d_in: int
    d_out: int

    @property
    def key(self) -> str:
        return self.path.replace(".", "-")


@dataclass
class ForwardResult:
    """Output of one forward; `pre`/`post` hold component acts `[..., C]` when cached.

    With `leaves="acts"`, `post[p]` is the detached leaf that the rest of the forward used and
    `pre[p]` is attached. With `leaves="outputs"`, `post[p]` holds the (unmasked, detached)
    acts, `inputs[p]` the attached module input, and `outputs[p]` the masked components' output
    `[..., d_out]` as the gradient leaf the rest of the forward used; `written[p]` is what the
    module returned (that leaf plus its delta term), the tensor the rest of the forward read.
    """

    output: Tensor
    embedding: Tensor | None = None
    inputs: dict[str, Tensor] = field(default_factory=dict)
    pre: dict[str, Tensor] = field(default_factory=dict)
    post: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    written: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class DeltaTerm:
    """A module's weight-delta term (target minus component weight, `[d_out, d_in]`, as
    `ComponentModel.weight_deltas` gives it) applied to the module input, scaled per position
    by `mask` `[batch, seq]` (None: 1 everywhere, without the product in either direction)."""

    weight: Tensor
    mask: Float[Tensor, "batch seq"] | None = None


@dataclass(frozen=True)
class KnownOutputs:
    """Leaves of an earlier forward over longer prompts with the same masks: a forward over a
    prefix reuses their first positions rather than recomputing them (equal for causal
    models). Only `grad_leaves` (all when None) take gradients: the others are constants and
    autograd skips what only they reach."""

    outputs: Mapping[str, Tensor]
    grad_leaves: Collection[str] | None = None


Leaves = Literal["none", "acts", "outputs"]
"""Which tensors of each decomposed module become detached gradient leaves: none, its component
acts (`post`, `C` wide), or its masked components' output (`outputs`, `d_out` wide)."""


@dataclass(frozen=True)
class ForwardPlan:
    """What one `ComponentModel` forward does; the default is the plain target model.

    `masks[p]` `[batch, seq, C]` replaces module p's output by its masked components; `deltas[p]`
    adds its weight-delta term. `leaves` makes each module's acts or output a detached gradient
    leaf (output leaves need every module's mask), so gradients reach a leaf only along paths
    that cross no other module's components. `delta_paths` (with leaves): the delta terms read the
    attached module input, so those paths also run through other modules' delta terms (the SPD
    app's graphs); otherwise the delta terms are constants and edges stay direct.
    `cache_inputs` records every module input (output leaves always do). `embedding_leaf`
    makes the token-embedding output a detached gradient leaf (`result.embedding`,
    `[batch, seq, d_model]`). `known` (with `leaves="outputs"`): leaves reused from a longer
    forward.
    """

    masks: Mapping[str, Tensor] | None = None
    deltas: Mapping[str, DeltaTerm] | None = None
    leaves: Leaves = "none"
    delta_paths: bool = False
    cache_inputs: bool = False
    embedding_leaf: bool = False
    known: KnownOutputs | None = None

    def __post_init__(self) -> None:
        assert self.known is None or self.leaves == "outputs", "known outputs are output leaves"
        assert not self.delta_paths or (self.leaves != "none" and self.deltas is not None), (
            "delta_paths says how deltas meet leaves: it needs both"
        )


PLAIN = ForwardPlan()
CACHE_INPUTS = ForwardPlan(cache_inputs=True)
"""The plain target model, recording every decomposed module's input (for CI)."""


@dataclass(frozen=True)
class _Active:
    """The plan of the forward in progress and the result it fills in."""

    plan: ForwardPlan
    result: ForwardResult


def _kind_of(module: nn.Module) -> ModuleKind | None:
    if isinstance(module, InsertedIdentity):
        return "identity"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return "conv1d"
    return None


def _dims(module: nn.Module, kind: ModuleKind) -> tuple[int, int]:
    match kind:
        case "identity":
            assert isinstance(module, InsertedIdentity)
            return module.d, module.d
        case "linear":
            assert isinstance(module, nn.Linear)
            return module.in_features, module.out_features
        case "embedding":
            assert isinstance(module, nn.Embedding)
            return module.num_embeddings, module.embedding_dim
        case "conv1d":
            weight = module.weight
            assert isinstance(weight, Tensor)
            return weight.shape[0], weight.shape[1]


def _insert_identities(target: nn.Module, infos: tuple[ModuleInfo, ...]) -> None:
    for info in infos:
        matched = False
        for name, module in list(target.named_modules()):
            if not fnmatch.fnmatchcase(name, info.module_pattern):
                continue
            kind = _kind_of(module)
            if kind not in ("linear", "conv1d"):
                raise LocattrComputeError(
                    f"identity pattern {info.module_pattern!r} matched {name!r}, a "
                    f"{type(module).__name__}; identity insertion supports Linear and Conv1D only"
                )
            matched = True
            module.pre_identity = InsertedIdentity(_dims(module, kind)[0])
            module.register_forward_pre_hook(_route_through_identity)
        if not matched:
            raise LocattrComputeError(
                f"identity pattern {info.module_pattern!r} matches no module of the target model"
            )


def _route_through_identity(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    assert len(args) == 1, "a module with an inserted identity takes one positional input"
    return (module.get_submodule("pre_identity")(args[0]),)


def find_decomposed_modules(
    target: nn.Module, infos: tuple[ModuleInfo, ...]
) -> tuple[DecomposedModule, ...]:
    """Modules matched by the patterns (case-sensitive fnmatch), in `named_modules` order."""
    found: dict[str, DecomposedModule] = {}
    hits = dict.fromkeys((info.module_pattern for info in infos), 0)
    for name, module in target.named_modules():
        matching = [info for info in infos if fnmatch.fnmatchcase(name, info.module_pattern)]
        if not matching:
            continue
        for info in matching:
            hits[info.module_pattern] += 1
        if len({info.C for info in matching}) > 1:
            raise LocattrComputeError(
                f"module {name!r} matches patterns with different C: "
                + ", ".join(f"{i.module_pattern} (C={i.C})" for i in matching)
            )
        kind = _kind_of(module)
        if kind is None:
            raise LocattrComputeError(
                f"module {name!r} ({type(module).__name__}) cannot be decomposed: only Linear, "
                "Conv1D, Embedding and inserted identities can"
            )
        d_in, d_out = _dims(module, kind)
        found[name] = DecomposedModule(name, kind, matching[0].C, d_in, d_out)
    unmatched = [pattern for pattern, n in hits.items() if n == 0]
    if unmatched:
        raise LocattrComputeError(
            f"module patterns match no module of the target model: {unmatched}"
        )
    return tuple(found.values())


def _find_input_embedding(target: nn.Module, decomposed: tuple[str, ...]) -> str | None:
    """The token embedding: `get_input_embeddings()`, else `wte`, else the first Embedding.

    None when it is itself decomposed (its components are then the input nodes).
    """
    names = {module: name for name, module in target.named_modules()}
    getter = getattr(target, "get_input_embeddings", None)
    candidate = getter() if callable(getter) else None
    name = names.get(candidate) if isinstance(candidate, nn.Module) else None
    if name is None:
        embeddings = [n for n, m in target.named_modules() if isinstance(m, nn.Embedding)]
        named_wte = [n for n in embeddings if n == "wte" or n.endswith(".wte")]
        name = (named_wte or embeddings or [None])[0]
    return None if name is None or name in decomposed else name


class ComponentModel(nn.Module):
    """Target model plus components and CI functions for every decomposed module.

    Parameters are frozen: attribution gradients are taken only w.r.t. cached component acts.
    """

    def __init__(self, target_model: nn.Module, config: SPDConfig) -> None:
        super().__init__()
        _insert_identities(target_model, config.identity_module_info)
        self.target_model = target_model
        self.config = config
        self.modules_info = find_decomposed_modules(target_model, config.all_module_info)
        named = dict(target_model.named_modules())
        components: dict[str, Components] = {}
        ci_fns: dict[str, CiFn] = {}
        for info in self.modules_info:
            module = named[info.path]
            if info.kind == "embedding":
                if config.ci_fn_type != "mlp":
                    raise LocattrComputeError(
                        f"embedding module {info.path!r} needs ci_fn_type 'mlp', "
                        f"config has {config.ci_fn_type!r}"
                    )
                components[info.key] = EmbeddingComponents(info.d_in, info.d_out, info.C)
            else:
                bias = getattr(module, "bias", None) if info.kind != "identity" else None
                bias = bias if isinstance(bias, Tensor) else None
                components[info.key] = LinearComponents(info.d_in, info.d_out, info.C, bias)
            ci_fns[info.key] = make_ci_fn(
                config.ci_fn_type, info.C, info.d_in, config.ci_fn_hidden_dims
            )
        # Keys are sorted, as SPD builds both ModuleDicts, though order does not affect loading.
        self._components = nn.ModuleDict(dict(sorted(components.items())))
        self._ci_fns = nn.ModuleDict(dict(sorted(ci_fns.items())))
        self._lower, self._upper = ci_functions(config.sigmoid_type)
        self._active: _Active | None = None
        for info in self.modules_info:
            module = named[info.path]
            module.forward = self._make_forward(info, module.forward)
        self.input_embedding_path = _find_input_embedding(target_model, self.module_paths)
        if self.input_embedding_path is not None:
            named[self.input_embedding_path].register_forward_hook(self._embedding_hook)

    @property
    def module_paths(self) -> tuple[str, ...]:
        return tuple(info.path for info in self.modules_info)

    def components(self, path: str) -> Components:
        module = self._components[path.replace(".", "-")]
        assert isinstance(module, LinearComponents | EmbeddingComponents)
        return module

    def ci_fn(self, path: str) -> CiFn:
        return self._ci_fns[path.replace(".", "-")]  # type: ignore[return-value]

    def _make_forward(self, info: DecomposedModule, original: Callable[..., Any]):  # noqa: ANN202
        """The decomposed module's forward: its replacement under a plan that asks for one,
        else the module's own forward (not both: the replaced output is never computed)."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            active = self._active
            if active is not None:
                assert len(args) == 1 and not kwargs, (
                    f"decomposed module {info.path} must be called with one positional tensor"
                )
                replaced = self._replacement(info, active, args[0])
                if replaced is not None:
                    return replaced
            return original(*args, **kwargs)

        return forward

    def _replacement(self, info: DecomposedModule, active: _Active, x: Tensor) -> Tensor | None:
        """What the plan puts in place of the module's output, recording what it caches;
        None keeps the module's own output."""
        plan, result = active.plan, active.result
        if plan.cache_inputs or plan.leaves == "outputs":
            result.inputs[info.path] = x
        mask = None if plan.masks is None else plan.masks.get(info.path)
        if mask is None and plan.leaves != "acts":
            assert plan.leaves == "none", f"leaves={plan.leaves!r} needs a mask for {info.path}"
            return None
        comps = self.components(info.path)
        if plan.known is not None:
            out = plan.known.outputs[info.path][:, : x.shape[1]].detach()
            if plan.known.grad_leaves is None or info.path in plan.known.grad_leaves:
                out.requires_grad_(True)
            result.outputs[info.path] = out
        else:
            acts = comps.inner_acts(x.detach() if plan.leaves == "outputs" else x)
            if plan.leaves == "acts":
                result.pre[info.path] = acts
                acts = acts.detach().requires_grad_(True)
                result.post[info.path] = acts
            elif plan.leaves == "outputs":
                result.post[info.path] = acts
            if mask is None:
                return None
            out = comps.output(acts * mask)
            if plan.leaves == "outputs":
                out = out.detach().requires_grad_(True)
                result.outputs[info.path] = out
        delta = None if plan.deltas is None else plan.deltas.get(info.path)
        if delta is not None:
            # With leaves, a delta term on the detached input is a constant: gradients then
            # reach a leaf only along component paths, so edges stay direct exactly as in the
            # CI-masked forward. `delta_paths` keeps the input attached (the SPD app's edges).
            constant = plan.leaves != "none" and not plan.delta_paths
            term = comps.delta_output(x.detach() if constant else x, delta.weight)
            out = out + (term if delta.mask is None else delta.mask.unsqueeze(-1) * term)
        if plan.leaves == "outputs":
            result.written[info.path] = out
        return out

    def _embedding_hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Any:
        active = self._active
        if active is None or not active.plan.embedding_leaf:
            return None
        leaf = output.detach().requires_grad_(True)
        active.result.embedding = leaf
        return leaf

    @contextmanager
    def _planned(self, plan: ForwardPlan) -> Iterator[ForwardResult]:
        assert self._active is None, "ComponentModel forwards do not nest"
        self._active = _Active(plan, ForwardResult(torch.empty(0)))
        try:
            yield self._active.result
        finally:
            self._active = None

    def extract_output(self, raw: Any) -> Tensor:
        """Apply `pretrained_model_output_attr`: null = raw, `idx_N` = N-th item, else attribute."""
        attr = self.config.pretrained_model_output_attr
        if attr is None:
            out = raw
        elif attr.startswith("idx_"):
            out = raw[int(attr[4:])]
        else:
            out = getattr(raw, attr)
        assert isinstance(out, Tensor), f"model output via {attr!r} is {type(out).__name__}"
        return out

    def forward(
        self, token_ids: Int[Tensor, "batch seq"], plan: ForwardPlan = PLAIN
    ) -> ForwardResult:
        """One forward as `plan` describes it (by default the plain target model)."""
        if plan.embedding_leaf:
            assert self.input_embedding_path is not None, "the target has no usable embedding"
        with self._planned(plan) as result:
            result.output = self.extract_output(self.target_model(token_ids))
        return result

    def target_weight(self, path: str) -> Tensor:
        info = next(i for i in self.modules_info if i.path == path)
        module = self.target_model.get_submodule(path)
        match info.kind:
            case "identity":
                return torch.eye(info.d_in, device=self.device, dtype=self.dtype)
            case "conv1d":
                return module.weight.T  # type: ignore[union-attr]
            case _:
                return module.weight  # type: ignore[return-value]

    def weight_deltas(self) -> dict[str, Tensor]:
        """Target minus component weight per module: `[d_out, d_in]` (embeddings `[vocab, d]`)."""
        return {p: self.target_weight(p) - self.components(p).weight() for p in self.module_paths}

    def causal_importances(
        self, inputs: Mapping[str, Tensor]
    ) -> tuple[dict[str, Float[Tensor, "... C"]], dict[str, Float[Tensor, "... C"]]]:
        """(lower_leaky, upper_leaky) CI per module from the cached module inputs.

        Always continuous: `binomial` sampling only randomises training, and an inference
        graph whose alive set changed on every call would be useless.
        """
        pre = self._pre_sigmoid(inputs)
        return (
            {p: self._lower(v) for p, v in pre.items()},
            {p: self._upper(v) for p, v in pre.items()},
        )

    def lower_leaky_ci(self, inputs: Mapping[str, Tensor]) -> dict[str, Float[Tensor, "... C"]]:
        """The lower-leaky CI alone: what decides which units are alive and what they weigh."""
        return {p: self._lower(v) for p, v in self._pre_sigmoid(inputs).items()}

    def _pre_sigmoid(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        pre: dict[str, Tensor] = {}
        for path in self.module_paths:
            x = inputs[path]
            ci_input = self.components(path).inner_acts(x) if self.config.ci_fn_type == "mlp" else x
            pre[path] = self.ci_fn(path)(ci_input)
        return pre

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self._components.parameters()).dtype


LEGACY_KEY_RULES = (
    "`_gates.` -> `_ci_fns.`",
    "`patched_model.` -> `target_model.`",
    "`.original.weight` -> `.weight`",
    "`<module>.components.{U,V}` -> `_components.<module-with-dashes>.{U,V}`",
)


def rename_legacy_key(key: str) -> str:
    """Apply SPD's four legacy state-dict renames, in SPD's order."""
    key = key.replace("_gates.", "_ci_fns.")
    if key.startswith("patched_model."):
        key = "target_model." + key.removeprefix("patched_model.")
    if key.endswith(".original.weight"):
        key = key.removesuffix(".original.weight") + ".weight"
    for suffix in (".components.U", ".components.V"):
        if key.endswith(suffix):
            module = key.removesuffix(suffix).removeprefix("target_model.")
            key = f"_components.{module.replace('.', '-')}.{suffix[-1]}"
    return key


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_component_state(model: ComponentModel, state: Mapping[str, Tensor], source: str) -> None:
    """Strict load after legacy renames; a mismatch raises with the key and shape diff."""
    renamed = {rename_legacy_key(k): v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong_shape = [
        f"{k} {tuple(renamed[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in renamed and renamed[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_preview(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} of the wrong shape: {_preview(wrong_shape)}")
        raise LocattrComputeError(
            f"checkpoint {source} does not fit the model its final_config.yaml describes ("
            + "; ".join(parts)
            + "); check C / module patterns / pretrained_model_class against the run"
        )
    model.load_state_dict(renamed, strict=True)
    model.requires_grad_(False)
