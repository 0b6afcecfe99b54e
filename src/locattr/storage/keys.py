"""Component keys: ``"<layer>:<index>"``, e.g. ``"h.0.attn.q_proj:5"``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from locattr.errors import LocattrError

KEY_FORM = "'layer:index', e.g. 'h.0.attn.q_proj:5'"
MAX_KEY_CHARS = 320
"""Longer than any key can be: layer names have at most 300 characters (`models.Layer`)."""


class ComponentKeyError(LocattrError, ValueError):
    """A component key that is not of the form ``layer:index``."""


@dataclass(frozen=True, slots=True, order=True)
class ComponentKey:
    layer: str
    index: int

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}"

    @classmethod
    def parse(cls, key: str) -> ComponentKey:
        layer, sep, index = key.strip().rpartition(":")
        # isascii: str.isdigit also accepts digits such as '²', which int() refuses
        digits = index.isascii() and index.isdigit()
        if len(key) > MAX_KEY_CHARS or not sep or not layer or not digits:
            raise ComponentKeyError(f"malformed component key {_shown(key)}: expected {KEY_FORM}")
        return cls(layer, int(index))


def _shown(key: str) -> str:
    return repr(key) if len(key) <= 80 else f"{key[:60]!r}... ({len(key)} characters)"


def parse_keys(keys: Iterable[str]) -> list[ComponentKey]:
    """Parse and de-duplicate keys, keeping first-seen order."""
    return list(dict.fromkeys(ComponentKey.parse(key) for key in keys))
