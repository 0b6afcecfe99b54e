"""Activation contexts compressed together and read back one at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from locattr.storage.context_blobs import MIN_SAMPLES, ContextDecoder, encode_contexts

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(-1e9, 1e9) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=12), JSON, max_size=6), max_size=80))
def test_contexts_decode_to_what_was_stored(contexts: list[dict[str, Any]]) -> None:
    encoded = encode_contexts(contexts)
    decoder = ContextDecoder({} if encoded.dictionary is None else {7: encoded.dictionary})
    dictionary_id = None if encoded.dictionary is None else 7
    assert [decoder.decode(blob, dictionary_id) for blob in encoded.blobs] == contexts


def realistic(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    words = [f" w{i}" for i in range(60)]
    return [
        {
            "subcomponent_idx": i,
            "mean_ci": round(float(rng.random()), 3),
            "example_tokens": [rng.choice(words, 10).tolist() for _ in range(8)],
            "example_ci": [np.round(rng.random(10) * (rng.random(10) < 0.2), 3).tolist()] * 8,
        }
        for i in range(n)
    ]


def test_a_dictionary_is_trained_when_there_are_enough_contexts() -> None:
    few, many = encode_contexts(realistic(MIN_SAMPLES - 1)), encode_contexts(realistic(600))
    assert few.dictionary is None and many.dictionary is not None
    alone = sum(len(encode_contexts([c]).blobs[0]) for c in realistic(600))
    assert sum(map(len, many.blobs)) + len(many.dictionary) < 0.75 * alone


def test_documents_too_uniform_to_train_on_are_stored_alone() -> None:
    encoded = encode_contexts([{"a": 1}] * 500)
    assert encoded.dictionary is None
    assert ContextDecoder({}).decode(encoded.blobs[0], None) == {"a": 1}
