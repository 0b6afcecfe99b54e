"""`wandb:` run paths: parsing, and a run-keyed download cache so later loads need no network.

The cache lives at `$LOCATTR_CACHE_DIR/wandb/<entity>/<project>/<run_id>` (default
`~/.cache/locattr`). A run whose files are already there is never looked up online, so the
wandb package is imported only when something must be downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from locattr.compute.errors import LocattrComputeError

WANDB_PREFIX = "wandb:"
_URL_PREFIXES = ("https://wandb.ai/", "http://wandb.ai/")
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# Later SPD run ids may carry a one-character prefix (`t-bd02d372` for a pretrain run).
_RUN_ID = r"(?:[a-z0-9]-)?[a-z0-9]+"
_FORMS = (
    re.compile(rf"^(?P<entity>{_NAME})/(?P<project>{_NAME})/runs/(?P<run_id>{_RUN_ID})$"),
    re.compile(rf"^(?P<entity>{_NAME})/(?P<project>{_NAME})/(?P<run_id>{_RUN_ID})$"),
)
_CANONICAL = "wandb:<entity>/<project>/runs/<run_id>"


@dataclass(frozen=True)
class WandbRunPath:
    entity: str
    project: str
    run_id: str

    def __str__(self) -> str:
        return f"{WANDB_PREFIX}{self.entity}/{self.project}/runs/{self.run_id}"

    @property
    def api_path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"


def is_wandb_path(text: str) -> bool:
    return text.startswith(WANDB_PREFIX) or text.startswith(_URL_PREFIXES)


def parse_wandb_path(text: str) -> WandbRunPath:
    """Accept `wandb:e/p/runs/id`, `wandb:e/p/id` and `https://wandb.ai/e/p/runs/id[/…][?…]`."""
    body = text
    if text.startswith(WANDB_PREFIX):
        body = text.removeprefix(WANDB_PREFIX)
    else:
        for prefix in _URL_PREFIXES:
            if text.startswith(prefix):
                parts = text.removeprefix(prefix).split("?")[0].split("#")[0].split("/")
                body = "/".join(parts[:4])
    for form in _FORMS:
        match = form.match(body)
        if match:
            return WandbRunPath(match["entity"], match["project"], match["run_id"])
    raise LocattrComputeError(
        f"malformed W&B run path {text!r}: expected {_CANONICAL} "
        "(e.g. wandb:goodfire/spd/runs/jyo9duz5) or a https://wandb.ai/… run URL"
    )


def cache_dir(run: WandbRunPath) -> Path:
    root = Path(os.environ.get("LOCATTR_CACHE_DIR", Path.home() / ".cache" / "locattr"))
    return root.expanduser() / "wandb" / run.entity / run.project / run.run_id


def latest_checkpoint_name(names: Sequence[str], suffixes: tuple[str, ...]) -> str | None:
    """SPD's rule: among `model*<suffix>` names, the only one, else the largest trailing step."""
    candidates = [n for n in names if n.startswith("model") and n.endswith(suffixes)]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None

    def step(name: str) -> int:
        stem = name.rsplit(".", 1)[0]
        tail = stem.rsplit("_", 1)[-1]
        if not tail.isdigit():
            raise LocattrComputeError(
                f"cannot order checkpoints: {name!r} has no numeric step after its last '_'"
            )
        return int(tail)

    return max(candidates, key=step)


def spd_run_files(names: Sequence[str]) -> list[str]:
    """Files an SPD run needs: `final_config.yaml` and the latest `model_<step>.pth`."""
    checkpoint = latest_checkpoint_name(names, (".pth", ".pt"))
    missing = [
        n
        for n, ok in (
            ("final_config.yaml", "final_config.yaml" in names),
            ("model_<step>.pth", checkpoint is not None),
        )
        if not ok
    ]
    if missing:
        raise LocattrComputeError(f"the W&B run has no {' and no '.join(missing)}")
    assert checkpoint is not None
    return ["final_config.yaml", checkpoint]


def pretrain_run_files(names: Sequence[str]) -> list[str]:
    """Files a pretrain run contributes: the architecture, and LN stds / configs when present."""
    if "model_config.yaml" not in names:
        raise LocattrComputeError("the W&B pretrain run has no model_config.yaml")
    optional = ("final_config.yaml", "ln-stds.json", "tokenizer.json")
    return ["model_config.yaml", *(n for n in optional if n in names)]


def fetch_run(
    run: WandbRunPath, is_complete: Callable[[Path], bool], choose: Callable[[list[str]], list[str]]
) -> Path:
    """The run's cache directory, downloading the chosen files first unless already complete."""
    dest = cache_dir(run)
    if dest.is_dir() and is_complete(dest):
        return dest
    try:
        import wandb  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LocattrComputeError(
            f"{run} is not in the cache ({dest}) and the `wandb` package is not installed: "
            "`pip install wandb` and set WANDB_API_KEY to download it, or pass a local run "
            "directory (final_config.yaml + model_<step>.pth)"
        ) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{run.run_id}-partial-", dir=dest.parent))
    try:
        remote = wandb.Api().run(run.api_path)
        chosen = choose([f.name for f in remote.files()])
        for name in chosen:
            remote.file(name).download(root=str(partial), replace=True, exist_ok=True)
        dest.mkdir(exist_ok=True)
        for name in chosen:
            os.replace(partial / name, dest / name)
    except LocattrComputeError as exc:
        raise LocattrComputeError(f"{run}: {exc}") from exc
    except Exception as exc:
        raise LocattrComputeError(
            f"could not download {run} from W&B ({type(exc).__name__}: {exc}); check the "
            "network and WANDB_API_KEY, or pass a local run directory instead"
        ) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def fetch_spd_run(run: WandbRunPath) -> Path:
    def complete(d: Path) -> bool:
        names = [p.name for p in d.iterdir()]
        return (
            "final_config.yaml" in names
            and latest_checkpoint_name(names, (".pth", ".pt")) is not None
        )

    return fetch_run(run, complete, spd_run_files)


def fetch_pretrain_run(run: WandbRunPath) -> Path:
    return fetch_run(run, lambda d: (d / "model_config.yaml").is_file(), pretrain_run_files)
