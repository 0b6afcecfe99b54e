"""Token ids to the strings locattr shows (previews, graph columns, activation contexts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_NO_SPACE_BEFORE = tuple(".,!?;:'\")-]}>/")


def token_strings(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """Each token decoded alone; word pieces (`##x`) join the previous token, and other tokens
    get a leading space unless they are punctuation, start the sequence, or bring their own
    (byte-level BPE tokens such as GPT-2's decode with it)."""
    strings = []
    for i, piece in enumerate(tokenizer.decode([t]) for t in token_ids):
        if piece.startswith("##"):
            strings.append(piece[2:])
        elif i == 0 or piece.startswith(_NO_SPACE_BEFORE) or piece[:1].isspace():
            strings.append(piece)
        else:
            strings.append(f" {piece}")
    return strings
