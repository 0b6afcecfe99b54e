"""Token ids to the strings locattr shows (previews, graph columns, activation contexts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_NO_SPACE_BEFORE = tuple(".,!?;:'\")-]}>/")


class TokenText:
    """Display strings for token ids, each id decoded once (decoding dominates otherwise)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.pieces: dict[int, str] = {}

    def piece(self, token_id: int) -> str:
        """The token decoded alone (`[id]` when the run has no tokenizer)."""
        piece = self.pieces.get(token_id)
        if piece is None:
            piece = (
                self.tokenizer.decode([token_id]) if self.tokenizer is not None else f"[{token_id}]"
            )
            self.pieces[token_id] = piece
        return piece

    def vocabulary(self, size: int) -> list[str]:
        """Every token as it reads after another token (`strings`' rule for a later position):
        the labels of predicted tokens."""
        return [self.strings([0, token_id])[1] for token_id in range(size)]

    def strings(self, token_ids: Sequence[int]) -> list[str]:
        """Word pieces (`##x`) join the previous token; other tokens get a leading space unless
        they are punctuation, start the sequence, or bring their own (byte-level BPE tokens
        such as GPT-2's decode with it)."""
        strings = []
        for i, piece in enumerate(self.piece(t) for t in token_ids):
            if piece.startswith("##"):
                strings.append(piece[2:])
            elif i == 0 or piece.startswith(_NO_SPACE_BEFORE) or piece[:1].isspace():
                strings.append(piece)
            else:
                strings.append(f" {piece}")
        return strings
