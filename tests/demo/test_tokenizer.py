"""The word-level tokenizer round-trips corpus text, alone and through `transformers`."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from locattr.demo import RUN_ROOT
from locattr.demo.corpus import stories
from locattr.demo.tokenizer import EOS, EOS_ID, build_tokenizer, save_tokenizer

TEXTS = stories("heldout", 100, seed=1)


def test_round_trip_without_unknowns() -> None:
    tokenizer = build_tokenizer()
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert 0 not in ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.token_to_id(EOS) == EOS_ID


def test_saved_tokenizer_loads_offline_with_auto_tokenizer(tmp_path: Path) -> None:
    save_tokenizer(build_tokenizer(), tmp_path)
    auto = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert auto.eos_token_id == EOS_ID
    for text in TEXTS[:20]:
        assert auto.decode(auto(text)["input_ids"]) == text


def test_shipped_tokenizer_is_the_built_one() -> None:
    shipped = AutoTokenizer.from_pretrained(str(RUN_ROOT / "tokenizer"), local_files_only=True)
    assert shipped.get_vocab() == build_tokenizer().get_vocab()


def test_typed_text_with_attached_punctuation_has_no_unknown_words() -> None:
    """A prompt typed in the browser ("lily." rather than the corpus's "lily .") tokenizes as
    the corpus text does, with the shipped tokenizer as the server loads it."""
    shipped = AutoTokenizer.from_pretrained(str(RUN_ROOT / "tokenizer"), local_files_only=True)
    typed = 'Once there was a cat named lily. lily said: "where is my ball" [EOS]'
    spaced = 'once there was a cat named lily . lily said : " where is my ball " [EOS]'
    ids = shipped(typed)["input_ids"]
    assert shipped.unk_token_id not in ids
    assert ids == shipped(spaced)["input_ids"]
