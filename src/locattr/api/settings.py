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
