"""Component keys: ``"<layer>:<index>"``, e.g. ``"h.0.attn.q_proj:5"``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from locattr.errors import LocattrError

KEY_FORM = "'layer:index', e.g. 'h.0.attn.q_proj:5'"


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
        if not sep or not layer or not index.isdigit():
            raise ComponentKeyError(f"malformed component key {key!r}: expected {KEY_FORM}")
        return cls(layer, int(index))


def parse_keys(keys: Iterable[str]) -> list[ComponentKey]:
    """Parse and de-duplicate keys, keeping first-seen order."""
    return list(dict.fromkeys(ComponentKey.parse(key) for key in keys))
