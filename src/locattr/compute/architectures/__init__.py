"""Built-in target architectures, keyed by class name under the class paths real runs use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from locattr.compute.architectures.gpt2_simple import GPT2Simple, GPT2SimpleConfig
from locattr.compute.architectures.llama_simple import (
    LlamaSimple,
    LlamaSimpleConfig,
    LlamaSimpleMLP,
    LlamaSimpleMLPConfig,
)
from locattr.compute.errors import LocattrComputeError

BUILTIN_MODULE_PREFIXES = ("simple_stories_train.models.", "spd.pretrain.models.")

BUILTINS: dict[str, tuple[type[nn.Module], type[BaseModel]]] = {
    "GPT2Simple": (GPT2Simple, GPT2SimpleConfig),
    "LlamaSimple": (LlamaSimple, LlamaSimpleConfig),
    "LlamaSimpleMLP": (LlamaSimpleMLP, LlamaSimpleMLPConfig),
}

_PRESET_COMMON = {"vocab_size": 4019, "block_size": 512, "n_head": 4, "n_embd": 128}
_LLAMA_COMMON = {"n_key_value_heads": 2, "rotary_dim": 32, "n_ctx": 512, "flash_attention": False}
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}
for _suffix, _n_layer in (("1.25M", 4), ("2L", 2), ("1L", 1)):
    PRESETS[f"gpt2_simple-{_suffix}"] = (
        "GPT2Simple",
        {**_PRESET_COMMON, "n_layer": _n_layer, "flash_attention": False},
    )
    PRESETS[f"llama_simple-{_suffix}"] = (
        "LlamaSimple",
        {**_PRESET_COMMON, **_LLAMA_COMMON, "n_layer": _n_layer, "n_intermediate": 341},
    )
    PRESETS[f"llama_simple_mlp-{_suffix}"] = (
        "LlamaSimpleMLP",
        {**_PRESET_COMMON, **_LLAMA_COMMON, "n_layer": _n_layer, "n_intermediate": 512},
    )

_IGNORED_MODEL_CONFIG_KEYS = ("model_type",)


def builtin_name(class_path: str) -> str | None:
    """The built-in class a config's `pretrained_model_class` names, if any."""
    module, _, name = class_path.rpartition(".")
    if name not in BUILTINS:
        return None
    if not module or any(f"{module}.".startswith(p) for p in BUILTIN_MODULE_PREFIXES):
        return name
    if module.startswith("locattr.compute.architectures"):
        return name
    return None


def build_builtin(name: str, model_config: dict[str, Any], source: str) -> nn.Module:
    """Build built-in `name` from a pretrain run's `model_config.yaml` fields (weights random)."""
    cls, config_cls = BUILTINS[name]
    fields = {k: v for k, v in model_config.items() if k not in _IGNORED_MODEL_CONFIG_KEYS}
    try:
        config = config_cls.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LocattrComputeError(f"{source} does not fit {name}: {problems}") from exc
    return cls(config)  # type: ignore[call-arg]


__all__ = [
    "BUILTINS",
    "BUILTIN_MODULE_PREFIXES",
    "PRESETS",
    "GPT2Simple",
    "LlamaSimple",
    "LlamaSimpleMLP",
    "build_builtin",
    "builtin_name",
]
