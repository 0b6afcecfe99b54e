"""Counts in messages: `1 prompt`, `2 prompts`."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """`count` and the noun in the number it takes (`plural_noun`, default `noun` + "s")."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"
