"""The subset of an SPD `final_config.yaml` that loading needs, parsed leniently.

SPD's own `Config` forbids unknown keys, so configs written by other SPD versions do not parse
with it; this model ignores everything it does not need and accepts both the Dec-2025 layout
(`C` + `target_module_patterns`) and the later per-module `module_info`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from locattr.compute.errors import LocattrComputeError

CiFnType = Literal["mlp", "vector_mlp", "shared_mlp"]
SigmoidType = Literal[
    "normal", "hard", "leaky_hard", "upper_leaky_hard", "lower_leaky_hard", "swish_hard"
]
Sampling = Literal["continuous", "binomial"]

_RENAMES = {
    "gate_type": "ci_fn_type",
    "gate_hidden_dims": "ci_fn_hidden_dims",
    "pretrained_model_name_hf": "pretrained_model_name",
}


class ModuleInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    module_pattern: str
    C: int = Field(gt=0)


class TaskConfig(BaseModel):
    """The LM task fields (other tasks keep only `task_name`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_name: str = "lm"
    max_seq_len: int = 512
    dataset_name: str = "lennart-finke/SimpleStories"
    column_name: str = "story"
    train_data_split: str = "train"
    eval_data_split: str = "test"
    is_tokenized: bool = False
    streaming: bool = False


class SPDConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    module_info: tuple[ModuleInfo, ...]
    identity_module_info: tuple[ModuleInfo, ...] = ()
    ci_fn_type: CiFnType = "vector_mlp"
    ci_fn_hidden_dims: tuple[int, ...] = (8,)
    sigmoid_type: SigmoidType = "leaky_hard"
    sampling: Sampling = "continuous"
    use_delta_component: bool = True
    pretrained_model_class: str
    pretrained_model_name: str | None = None
    pretrained_model_path: str | None = None
    pretrained_model_output_attr: str | None = None
    tokenizer_name: str | None = None
    seed: int = 0
    steps: int | None = None
    task_config: TaskConfig = TaskConfig()

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in _RENAMES.items():
            if old in data:
                value = data.pop(old)
                data.setdefault(new, value)
        if data.get("module_info") is None:
            patterns = data.get("target_module_patterns")
            if patterns is None or data.get("C") is None:
                raise ValueError(
                    "config has neither `module_info` nor `C` + `target_module_patterns`"
                )
            data["module_info"] = [{"module_pattern": p, "C": data["C"]} for p in patterns]
        if data.get("identity_module_info") is None:
            patterns = data.get("identity_module_patterns") or []
            c = data.get("C")
            if patterns and c is None:
                raise ValueError("`identity_module_patterns` needs a global `C`")
            data["identity_module_info"] = [{"module_pattern": p, "C": c} for p in patterns]
        return data

    @property
    def all_module_info(self) -> tuple[ModuleInfo, ...]:
        """Target patterns plus `<pattern>.pre_identity` for every identity pattern."""
        identities = tuple(
            ModuleInfo(module_pattern=f"{m.module_pattern}.pre_identity", C=m.C)
            for m in self.identity_module_info
        )
        return self.module_info + identities

    @property
    def pretrained_model_source(self) -> str | None:
        """Where the target model comes from: the name, or the path when the name is null."""
        return self.pretrained_model_name or self.pretrained_model_path

    @property
    def pretrained_model_source_key(self) -> str:
        """The config key `pretrained_model_source` was read from, for error messages."""
        return "pretrained_model_name" if self.pretrained_model_name else "pretrained_model_path"

    def restricted_to(
        self, paths: Mapping[str, int], identity_parents: Mapping[str, int]
    ) -> SPDConfig:
        """This config decomposing exactly `paths` (module path -> C) and inserting identities
        before exactly `identity_parents`: how `load_run(n_blocks=...)` leaves later blocks as
        plain target modules. Module names hold no fnmatch metacharacters, so each path is a
        pattern that matches itself only."""
        for path in (*paths, *identity_parents):
            assert not set("*?[") & set(path), f"module path {path!r} is not a literal pattern"
        return self.model_copy(
            update={
                "module_info": tuple(ModuleInfo(module_pattern=p, C=c) for p, c in paths.items()),
                "identity_module_info": tuple(
                    ModuleInfo(module_pattern=p, C=c) for p, c in identity_parents.items()
                ),
            }
        )


def load_spd_config(path: Path) -> SPDConfig:
    """Parse `final_config.yaml`; a file that does not fit raises a one-line error."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LocattrComputeError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise LocattrComputeError(f"{path} does not hold a mapping of config fields")
    try:
        return SPDConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise LocattrComputeError(f"{path} is not a usable SPD config: {problems}") from exc
