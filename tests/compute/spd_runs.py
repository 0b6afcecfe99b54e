"""Write real SPD-format run directories for small random models, straight from the format
spec (docs/spd-format.md §2-§4), without going through locattr's own ComponentModel."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import Tensor, nn

from locattr.compute.architectures import BUILTINS, build_builtin

Arch = Literal["GPT2Simple", "LlamaSimple", "LlamaSimpleMLP", "GPT2LMHeadModel"]

DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "GPT2Simple": ("h.*.attn.*_proj", "h.*.mlp.c_fc", "h.*.mlp.down_proj"),
    "LlamaSimple": ("h.*.attn.*_proj", "h.*.mlp.gate_proj", "h.*.mlp.up_proj", "h.*.mlp.down_proj"),
    "LlamaSimpleMLP": ("h.*.attn.*_proj", "h.*.mlp.c_fc", "h.*.mlp.down_proj"),
    "GPT2LMHeadModel": (
        "transformer.h.*.attn.c_attn",
        "transformer.h.*.attn.c_proj",
        "transformer.h.*.mlp.c_fc",
        "transformer.h.*.mlp.c_proj",
    ),
}


TEST_DEVICE = os.environ.get("LOCATTR_TEST_DEVICE", "cpu")
"""Where the attribution tests run (`LOCATTR_TEST_DEVICE=cuda` on a GPU machine)."""


@dataclass(frozen=True)
class RunSpec:
    arch: Arch = "GPT2Simple"
    n_layer: int = 2
    n_embd: int = 16
    n_head: int = 2
    vocab_size: int = 32
    block_size: int = 16
    C: int = 6
    per_module_C: tuple[tuple[str, int], ...] | None = None
    patterns: tuple[str, ...] | None = None
    identity_patterns: tuple[str, ...] = ()
    ci_fn_type: Literal["mlp", "vector_mlp", "shared_mlp"] = "shared_mlp"
    ci_fn_hidden_dims: tuple[int, ...] = (8,)
    sigmoid_type: str = "leaky_hard"
    legacy_keys: bool = False
    class_prefix: str = "simple_stories_train.models."
    steps: tuple[int, ...] = (5,)
    dead_fraction: float = 0.4
    ci_bias: float = 0.3
    seed: int = 0
    with_tokenizer: bool = True
    relative_pretrain: bool = False
    extra_model_config: tuple[tuple[str, Any], ...] = ()

    @property
    def module_patterns(self) -> tuple[str, ...]:
        return self.patterns if self.patterns is not None else DEFAULT_PATTERNS[self.arch]


def model_config(spec: RunSpec) -> dict[str, Any]:
    """`model_config.yaml` for a built-in architecture."""
    fields: dict[str, Any] = {
        "block_size": spec.block_size,
        "vocab_size": spec.vocab_size,
        "n_layer": spec.n_layer,
        "n_head": spec.n_head,
        "n_embd": spec.n_embd,
        "flash_attention": False,
    }
    if spec.arch != "GPT2Simple":
        fields |= {
            "n_intermediate": 3 * spec.n_embd,
            "n_key_value_heads": max(1, spec.n_head // 2),
            "rotary_dim": spec.n_embd // spec.n_head,
            "n_ctx": spec.block_size,
        }
    return fields | dict(spec.extra_model_config)


def _target_model(spec: RunSpec, pretrain_dir: Path) -> nn.Module:
    torch.manual_seed(spec.seed)
    if spec.arch == "GPT2LMHeadModel":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=spec.vocab_size,
            n_positions=spec.block_size,
            n_embd=spec.n_embd,
            n_layer=spec.n_layer,
            n_head=spec.n_head,
        )
        model = GPT2LMHeadModel(config)
        model.save_pretrained(pretrain_dir)
        return model
    assert spec.arch in BUILTINS
    model = build_builtin(spec.arch, model_config(spec), "test spec")
    for name, param in model.named_parameters():
        if name.endswith("weight") and param.ndim == 2:
            nn.init.normal_(param, std=0.3 if "wte" in name or "wpe" in name else 0.15)
        elif name.endswith("bias"):
            nn.init.normal_(param, std=0.05)
        else:
            nn.init.normal_(param, mean=1.0, std=0.1)
    return model


def _weight(module: nn.Module) -> Tensor:
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight


def _decomposed(model: nn.Module, spec: RunSpec) -> dict[str, tuple[int, int, Tensor | None, int]]:
    """path -> (d_in, d_out, target bias or None, C) per the format's module rules."""
    out: dict[str, tuple[int, int, Tensor | None, int]] = {}
    c_of = dict(spec.per_module_C or ())
    for pattern in spec.identity_patterns:
        for name, module in model.named_modules():
            if fnmatch.fnmatchcase(name, pattern):
                d = int(
                    module.in_features
                    if isinstance(module, nn.Linear)
                    else _weight(module).shape[0]
                )
                out[f"{name}.pre_identity"] = (d, d, None, c_of.get(pattern, spec.C))
    for name, module in model.named_modules():
        hits = [p for p in spec.module_patterns if fnmatch.fnmatchcase(name, p)]
        if not hits:
            continue
        C = c_of.get(hits[0], spec.C)
        if isinstance(module, nn.Linear):
            out[name] = (module.in_features, module.out_features, module.bias, C)
        elif isinstance(module, nn.Embedding):
            out[name] = (module.num_embeddings, module.embedding_dim, None, C)
        else:  # HF Conv1D: weight [d_in, d_out]
            d_in, d_out = _weight(module).shape
            bias = module.bias
            out[name] = (int(d_in), int(d_out), bias if isinstance(bias, Tensor) else None, C)
    return out


def _ci_fn_params(
    spec: RunSpec, key: str, d_in: int, C: int, g: torch.Generator
) -> dict[str, Tensor]:
    hidden = spec.ci_fn_hidden_dims
    params: dict[str, Tensor] = {}
    if spec.ci_fn_type == "shared_mlp":
        dims = (d_in, *hidden, C)
        shapes = [((a, b), (b,)) for a, b in zip(dims, dims[1:], strict=False)]
    else:
        first = 1 if spec.ci_fn_type == "mlp" else d_in
        dims = (first, *hidden, 1)
        shapes = [((C, a, b), (C, b)) for a, b in zip(dims, dims[1:], strict=False)]
    for i, (w_shape, b_shape) in enumerate(shapes):
        fan_in = w_shape[-2]
        params[f"_ci_fns.{key}.layers.{2 * i}.W"] = torch.randn(w_shape, generator=g) / fan_in**0.5
        bias = 0.1 * torch.randn(b_shape, generator=g)
        if i == len(shapes) - 1:
            per_c = bias.view(C, -1)
            dead = torch.rand(C, generator=g) < spec.dead_fraction
            per_c += torch.where(dead, -30.0, spec.ci_bias)[:, None]
        params[f"_ci_fns.{key}.layers.{2 * i}.b"] = bias
    return params


def component_state(model: nn.Module, spec: RunSpec) -> dict[str, Tensor]:
    """The full flat checkpoint dict: target_model.*, _components.*, _ci_fns.*."""
    g = torch.Generator().manual_seed(spec.seed + 1)
    state = {f"target_model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for path, (d_in, d_out, bias, C) in _decomposed(model, spec).items():
        key = path.replace(".", "-")
        state[f"_components.{key}.V"] = torch.randn(d_in, C, generator=g) / d_in**0.5
        state[f"_components.{key}.U"] = torch.randn(C, d_out, generator=g) / C**0.5
        if bias is not None:
            state[f"_components.{key}.bias"] = bias.detach().clone()
        ci_in = C if spec.ci_fn_type == "mlp" else d_in
        state |= _ci_fn_params(spec, key, ci_in, C, g)
    return state


def legacy_state(state: dict[str, Tensor], decomposed: set[str]) -> dict[str, Tensor]:
    """The same weights under the pre-rename key names SPD still accepts."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("_ci_fns."):
            out["_gates." + key.removeprefix("_ci_fns.")] = value
        elif key.startswith("_components.") and key.endswith((".U", ".V")):
            module = key.removeprefix("_components.")[:-2].replace("-", ".")
            out[f"patched_model.{module}.components.{key[-1]}"] = value
        elif key.startswith("target_model."):
            name = key.removeprefix("target_model.")
            module = name.rsplit(".", 1)[0]
            if module in decomposed and name.endswith(".weight"):
                name = f"{module}.original.weight"
            out["patched_model." + name] = value
        else:
            out[key] = value
    return out


def spd_config(spec: RunSpec, pretrained: str) -> dict[str, Any]:
    if spec.arch == "GPT2LMHeadModel":
        class_path, output_attr = "transformers.GPT2LMHeadModel", "logits"
    else:
        module = {
            "GPT2Simple": "gpt2_simple",
            "LlamaSimple": "llama_simple",
            "LlamaSimpleMLP": "llama_simple_mlp",
        }[spec.arch]
        class_path, output_attr = f"{spec.class_prefix}{module}.{spec.arch}", "idx_0"
    config: dict[str, Any] = {
        "seed": spec.seed,
        "ci_fn_type": spec.ci_fn_type,
        "ci_fn_hidden_dims": list(spec.ci_fn_hidden_dims),
        "sigmoid_type": spec.sigmoid_type,
        "sampling": "continuous",
        "use_delta_component": True,
        "pretrained_model_class": class_path,
        "pretrained_model_name": pretrained,
        "pretrained_model_path": None,
        "pretrained_model_output_attr": output_attr,
        "tokenizer_name": None,
        "steps": max(spec.steps),
        "save_freq": None,
        "lr": 1e-3,
        "batch_size": 4,
        "loss_metric_configs": [{"classname": "ImportanceMinimalityLoss", "coeff": 1e-4}],
        "autocast_bf16": False,
        "task_config": {
            "task_name": "lm",
            "max_seq_len": spec.block_size,
            "buffer_size": 1000,
            "dataset_name": "SimpleStories/SimpleStories",
            "column_name": "story",
        },
    }
    if spec.per_module_C is not None:
        c_of = dict(spec.per_module_C)
        config["module_info"] = [
            {"module_pattern": p, "C": c_of.get(p, spec.C)} for p in spec.module_patterns
        ]
        config["identity_module_info"] = [
            {"module_pattern": p, "C": c_of.get(p, spec.C)} for p in spec.identity_patterns
        ] or None
    else:
        config["C"] = spec.C
        config["target_module_patterns"] = list(spec.module_patterns)
        config["identity_module_patterns"] = list(spec.identity_patterns) or None
    if spec.legacy_keys:
        config["gate_type"] = config.pop("ci_fn_type")
        config["gate_hidden_dims"] = config.pop("ci_fn_hidden_dims")
        config["pretrained_model_name_hf"] = config.pop("pretrained_model_name")
    return config


def write_tokenizer(directory: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[EOS]": 1} | {f"w{i}": i + 2 for i in range(vocab_size - 2)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]")
    fast.save_pretrained(str(directory))


def write_run(root: Path, spec: RunSpec, name: str = "run") -> Path:
    """Write `<root>/<name>` (the SPD run) and `<root>/<name>-pretrain`; return the run dir."""
    run_dir, pretrain_dir = root / name, root / f"{name}-pretrain"
    run_dir.mkdir(parents=True)
    pretrain_dir.mkdir(parents=True)
    model = _target_model(spec, pretrain_dir)
    if spec.arch != "GPT2LMHeadModel":
        (pretrain_dir / "model_config.yaml").write_text(yaml.safe_dump(model_config(spec)))
        (pretrain_dir / "final_config.yaml").write_text(yaml.safe_dump({"model_id": "custom"}))
    pretrained = f"../{pretrain_dir.name}" if spec.relative_pretrain else str(pretrain_dir)
    (run_dir / "final_config.yaml").write_text(yaml.safe_dump(spd_config(spec, pretrained)))
    state = component_state(model, spec)
    if spec.legacy_keys:
        state = legacy_state(state, set(_decomposed(model, spec)))
    final = max(spec.steps)
    for step in spec.steps:
        # Earlier checkpoints hold zeros, so loading the wrong one is visible.
        weights = state if step == final else {k: torch.zeros_like(v) for k, v in state.items()}
        torch.save(weights, run_dir / f"model_{step}.pth")
    if spec.with_tokenizer:
        write_tokenizer(run_dir, spec.vocab_size)
    return run_dir


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))
