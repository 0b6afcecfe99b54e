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
    decoder = ContextDecoder(
        {} if encoded.dictionary is None else {7: encoded.dictionary}, no_vocabulary
    )
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
    assert ContextDecoder({}, no_vocabulary).decode(encoded.blobs[0], None) == {"a": 1}


def no_vocabulary() -> list[str] | None:
    raise AssertionError("a context stored whole needs no vocabulary")


VOCABULARY = [" [UNK]", ".", " the", " cat", " sat", "##s", " on", " mat"]


def windows(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """A context with `n` windows whose tokens read as `VOCABULARY` says after the first."""
    ids = [rng.integers(0, len(VOCABULARY), rng.integers(0, 6)).tolist() for _ in range(n)]
    tokens = [
        [f"first{i}"] + [VOCABULARY[t] for t in row[1:]] if row else [] for i, row in enumerate(ids)
    ]
    return {"subcomponent_idx": n, "example_tokens": tokens, "example_token_ids": ids, "z": 1}


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40))
def test_tokens_are_left_to_the_vocabulary_and_read_back_whole(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    contexts = [windows(rng, k) for k in range(n)]
    differs = {"example_tokens": [[" a", " x"]], "example_token_ids": [[0, 1]]}
    contexts.append(differs)  # stored as given: " x" is not how token 1 reads
    encoded = encode_contexts(contexts, VOCABULARY)
    asked: list[int] = []

    def vocabulary() -> list[str]:
        asked.append(1)
        return VOCABULARY

    decoder = ContextDecoder(
        {} if encoded.dictionary is None else {1: encoded.dictionary}, vocabulary
    )
    dictionary_id = None if encoded.dictionary is None else 1
    decoded = [decoder.decode(blob, dictionary_id) for blob in encoded.blobs]
    assert decoded == contexts
    assert [list(d) for d in decoded] == [list(c) for c in contexts]  # key order kept
    assert len(asked) == n  # every context but the one that differs left its tokens out


def test_tokens_left_out_make_contexts_smaller() -> None:
    rng = np.random.default_rng(0)
    contexts = [windows(rng, 10) for _ in range(200)]
    slim, whole = encode_contexts(contexts, VOCABULARY), encode_contexts(contexts)
    assert sum(map(len, slim.blobs)) < 0.9 * sum(map(len, whole.blobs))
