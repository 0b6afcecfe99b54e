"""Activation contexts as stored: each component's context as zstd-compressed JSON.

Contexts are small JSON documents (a few kB) that share most of their bytes with each other:
keys, token strings, runs of ``0.0``. Alone, zstd finds little of that in one document; so the
contexts stored together get a zstd dictionary trained on them (stored once, in
``activation_context_dictionaries``), and each document is compressed with it. On the demo
run's contexts that takes 1.5 MB of JSON to 0.28 MB with the dictionary (0.54 MB without one),
near the 0.23 MB gzip makes of all of them as one blob (the original system's layout, which
could only be read whole); each context still decodes alone, in microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def encode_contexts(contexts: Sequence[Mapping[str, Any]]) -> EncodedContexts:
    """Compress each context's JSON, with a dictionary trained on all of them when there are
    enough to train one."""
    documents = [document(context) for context in contexts]
    dictionary = train_dictionary(documents)
    compress = compressor(dictionary).compress
    return EncodedContexts(dictionary, [compress(d) for d in documents])


def document(context: Mapping[str, Any]) -> bytes:
    """A context's JSON, as it is compressed."""
    return orjson.dumps(dict(context))


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
    bytes."""

    def __init__(self, dictionaries: Mapping[int, bytes]) -> None:
        self._plain = zstandard.ZstdDecompressor()
        self._with = {
            i: zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(bytes(data)))
            for i, data in dictionaries.items()
        }

    def decode(self, blob: bytes, dictionary_id: int | None) -> dict[str, Any]:
        decompressor = self._plain if dictionary_id is None else self._with[dictionary_id]
        return orjson.loads(decompressor.decompress(blob))
