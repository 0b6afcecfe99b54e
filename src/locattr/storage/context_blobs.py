"""Activation contexts as stored: each component's context as zstd-compressed JSON.

Contexts are small JSON documents (a few kB) that share most of their bytes with each other:
keys, token strings, runs of ``0.0``. Alone, zstd finds little of that in one document; so the
contexts stored together get a zstd dictionary trained on them (stored once, in
``activation_context_dictionaries``), and each document is compressed with it. On the demo
run's contexts that takes 1.5 MB of JSON to 0.28 MB with the dictionary (0.54 MB without one),
near the 0.23 MB gzip makes of all of them as one blob (the original system's layout, which
could only be read whole); each context still decodes alone, in microseconds.

Most of a context's text is its example windows' token strings, which the stored vocabulary
already holds: every token after a window's first reads as the vocabulary says (the rule of
`generate.text.TokenText`). So a context whose windows all keep to that is stored with only
each window's first token (``example_tokens: {"first": [...]}``) and rebuilt on reading;
any other context is stored as given. Nothing is lost either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import zstandard

LEVEL = 12
"""zstd level: contexts are written once per database; past 12 the gain is under 3 %."""

DICTIONARY_BYTES = 16 << 10
MIN_SAMPLES = 32
"""Fewer documents than this are compressed without a dictionary (zstd cannot train one)."""
_TRAINING_BYTES = 8 << 20
"""At most this much JSON trains the dictionary (every k-th document), so training stays well
under a second however many contexts a database holds."""


@dataclass(frozen=True)
class EncodedContexts:
    """Documents compressed with `dictionary` (None: each on its own), in the order given."""

    dictionary: bytes | None
    blobs: list[bytes]


def encode_contexts(
    contexts: Sequence[Mapping[str, Any]], vocabulary: Sequence[str] | None = None
) -> EncodedContexts:
    """Compress each context's JSON (their tokens left to `vocabulary` where they read as it
    says), with a dictionary trained on all of them when there are enough to train one."""
    documents = [document(slim(context, vocabulary)) for context in contexts]
    dictionary = train_dictionary(documents)
    compress = compressor(dictionary).compress
    return EncodedContexts(dictionary, [compress(d) for d in documents])


def document(context: Mapping[str, Any]) -> bytes:
    """A context's JSON, as it is compressed."""
    return orjson.dumps(dict(context))


def slim(context: Mapping[str, Any], vocabulary: Sequence[str] | None) -> Mapping[str, Any]:
    """The context as stored: its example windows' tokens as their first tokens only, when
    `vocabulary` gives every later one (`full` rebuilds them); otherwise as it is."""
    tokens, ids = context.get("example_tokens"), context.get("example_token_ids")
    if vocabulary is None or not isinstance(tokens, list) or not isinstance(ids, list):
        return context
    if len(tokens) != len(ids) or not all(
        _reads_as_vocabulary(row, row_ids, vocabulary)
        for row, row_ids in zip(tokens, ids, strict=True)
    ):
        return context
    return {**context, "example_tokens": {"first": [row[0] if row else None for row in tokens]}}


def _reads_as_vocabulary(tokens: Any, ids: Any, vocabulary: Sequence[str]) -> bool:
    if not isinstance(tokens, list) or not isinstance(ids, list) or len(tokens) != len(ids):
        return False
    if tokens and not isinstance(tokens[0], str):
        return False
    return all(
        isinstance(i, int) and 0 <= i < len(vocabulary) and vocabulary[i] == token
        for token, i in zip(tokens[1:], ids[1:], strict=True)
    )


def full(stored: dict[str, Any], vocabulary: Callable[[], Sequence[str] | None]) -> dict[str, Any]:
    """A stored context as it was given (see `slim`); `vocabulary` is asked only for a context
    stored without its tokens."""
    tokens = stored.get("example_tokens")
    if not isinstance(tokens, dict):
        return stored
    words = vocabulary()
    if words is None:
        raise ValueError("this activation context needs the database's vocabulary, which is gone")
    stored["example_tokens"] = [
        [] if first is None else [first, *(words[i] for i in ids[1:])]
        for first, ids in zip(tokens["first"], stored["example_token_ids"], strict=True)
    ]
    return stored


def compressor(dictionary: bytes | None) -> zstandard.ZstdCompressor:
    """The compressor of documents stored with `dictionary` (None: alone)."""
    if dictionary is None:
        return zstandard.ZstdCompressor(level=LEVEL)
    return zstandard.ZstdCompressor(
        level=LEVEL, dict_data=zstandard.ZstdCompressionDict(dictionary)
    )


def train_dictionary(documents: Sequence[bytes]) -> bytes | None:
    """A zstd dictionary for `documents`, or None when they are too few or too small to train
    one on."""
    total = sum(map(len, documents))
    size = min(DICTIONARY_BYTES, total // 16)
    if len(documents) < MIN_SAMPLES or size < 1024:
        return None
    samples: list[Any] = list(documents[:: -(-total // _TRAINING_BYTES)])
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError:
        # zstd refuses some sample sets (too uniform to learn from); those documents then
        # compress well enough on their own.
        return None


class ContextDecoder:
    """Decodes stored contexts: `dictionaries` maps each dictionary id the rows name to its
    bytes; `vocabulary` gives the database's vocabulary (asked only when a context needs it)."""

    def __init__(
        self,
        dictionaries: Mapping[int, bytes],
        vocabulary: Callable[[], Sequence[str] | None],
    ) -> None:
        self._vocabulary = vocabulary
        self._plain = zstandard.ZstdDecompressor()
        self._with = {
            i: zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(bytes(data)))
            for i, data in dictionaries.items()
        }

    def decode(self, blob: bytes, dictionary_id: int | None) -> dict[str, Any]:
        decompressor = self._plain if dictionary_id is None else self._with[dictionary_id]
        return full(orjson.loads(decompressor.decompress(blob)), self._vocabulary)
