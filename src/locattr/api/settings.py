"""Server settings, from the environment (``LOCATTR_*``) or `locattr serve` flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_QUERY_CHARS = 4000
"""Longest list parameter (components, layers); 64 long keys fit, and the request line stays
within `H11_MAX_REQUEST_BYTES` even when every character is percent-encoded."""
MAX_KEY_LIST_CHARS = 20_000
"""Longest `keys` of /api/component_details: 500 keys of 40 characters."""
H11_MAX_REQUEST_BYTES = 256 * 1024
"""Largest request head the server reads: a query at its longest still fits when every
character is a percent-encoded 4-byte UTF-8 character (12 bytes: 240 kB for `keys`), so a
value the OpenAPI document allows gets an answer from the API, not a refused connection."""

MAX_BODY_BYTES = 8 << 20
"""Largest request body (JSON) the server reads (413 beyond): the longest body the OpenAPI
document allows still fits, `MAX_INTERVENTION_KEYS` + 1 keys of the longest key length with every
character escaped (`\\uXXXX`, 6 bytes) and the longest text, so a request the schema calls well
formed, or one item beyond it, gets an answer from the API."""
MAX_INTERVENTION_KEYS = 2048
"""Most component keys (and positions) one intervention may list."""
MAX_POSITION = 1 << 20
"""Largest token position a request may name (prompts are bounded by the model's context)."""
MAX_TEXT_CHARS = 100_000
"""Longest prompt text: tokenizing it takes milliseconds; the model's context bounds the rest."""
MAX_PROMPT_TOKENS = 100_000
"""Most token ids a prompt may send (the model's context is checked after)."""
MAX_SEARCH_PROMPTS = 1000
"""Most prompts one intervention search runs on (`limit`)."""

FRONTEND_DIST = Path(__file__).resolve().parents[3] / "frontend" / "dist"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCATTR_", extra="ignore")

    db: str = Field(
        default="", description="SQLite path or SQLAlchemy URL of the database to serve."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API (none by default)."
    )
    query_timeout_s: float = Field(
        default=10.0, gt=0, description="Time limit for each request's SQL."
    )
    frontend_dir: Path = Field(default=FRONTEND_DIST, description="Built frontend served at /.")
    model: str = Field(
        default="",
        description="SPD run to hold for computing graphs and interventions (`demo`, a run "
        "directory, a model_<step>.pth file or a cached wandb: path); none: those endpoints "
        "answer 409.",
    )
    device: str = Field(default="cpu", description="Device of the model (`cpu`, `cuda`, `cuda:1`).")
    compute_queue: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for the model; beyond them: 503 with Retry-After.",
    )
    compute_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time limit for each request that computes on the model, waiting included "
        "(a search over prompts stops there and reports the prompts done).",
    )
    graph_cache_bytes: int = Field(
        default=256 << 20, ge=0, description="Memory for recently computed graphs, in bytes."
    )
