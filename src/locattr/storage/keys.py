"""Component keys: ``"<layer>:<index>"``, e.g. ``"h.0.attn.q_proj:5"``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from locattr.errors import LocattrError

KEY_FORM = "'layer:index', e.g. 'h.0.attn.q_proj:5'"
MAX_KEY_CHARS = 320
"""Longer than any key can be (layer names have at most 300 characters, `models.Layer`): the API
refuses longer single keys; a longer key in a list simply names no component."""
MAX_INDEX_DIGITS = 20

_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""The characters `str.strip` removes (`str.isspace`), as the body of a regex class."""

_INDEX = f"[0-9]{{1,{MAX_INDEX_DIGITS}}}"

KEY_PATTERN = rf"^[{_SPACE}]*[^{_SPACE}][\s\S]*:{_INDEX}[{_SPACE}]*$"
"""The keys `ComponentKey.parse` accepts, for the API's schema: a layer (any characters, the
first not whitespace), `:` and the index's digits, with whitespace around."""


def key_list_pattern(max_keys: int, *, min_keys: int = 1) -> str:
    """The comma-separated lists `split_keys` and `ComponentKey.parse` accept with `min_keys`
    (0 or 1) to `max_keys` keys: blank items are skipped, each key as `KEY_PATTERN` says.

    Kept small enough for the Rust regex engine of schema validators (jsonschema-rs) to compile
    with 500 keys: a bound on each key's length would multiply its size by the bound."""
    assert min_keys in (0, 1) and max_keys >= 1
    blank = f"[{_SPACE}]*"
    key = f"{blank}[^,{_SPACE}][^,]*:{_INDEX}{blank}"
    keys = f"(?:{blank},)*{key}(?:,{blank})*(?:,{key}(?:,{blank})*){{0,{max_keys - 1}}}"
    return f"^(?:{keys}|{blank}(?:,{blank})*)$" if min_keys == 0 else f"^{keys}$"


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
        """`layer:index` with whitespace around; any length (a layer longer than any stored
        names no component), the index of 1 to `MAX_INDEX_DIGITS` digits."""
        layer, sep, index = key.strip().rpartition(":")
        # isascii: str.isdigit also accepts digits such as '²', which int() refuses
        digits = index.isascii() and index.isdigit() and len(index) <= MAX_INDEX_DIGITS
        if not sep or not layer or not digits:
            raise ComponentKeyError(f"malformed component key {_shown(key)}: expected {KEY_FORM}")
        return cls(layer, int(index))


def _shown(key: str) -> str:
    return repr(key) if len(key) <= 80 else f"{key[:60]!r}... ({len(key)} characters)"


def split_keys(text: str) -> list[str]:
    """The keys of a comma-separated list, stripped, blank items skipped (not yet parsed)."""
    return [key.strip() for key in text.split(",") if key.strip()]


def parse_keys(keys: Iterable[str]) -> list[ComponentKey]:
    """Parse and de-duplicate keys, keeping first-seen order."""
    return list(dict.fromkeys(ComponentKey.parse(key) for key in keys))
