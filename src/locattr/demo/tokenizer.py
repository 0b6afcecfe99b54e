"""The demo's word-level tokenizer: one id per grammar word, `[UNK]` 0 and `[EOS]` 1.

Built with the `tokenizers` library from the grammar's full vocabulary (not from samples), so
it does not depend on which stories were drawn. Saved with `transformers` so that
`AutoTokenizer.from_pretrained(directory)` loads it offline, as the compute loader does.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from locattr.demo.corpus import vocabulary

UNK, EOS = "[UNK]", "[EOS]"
EOS_ID = 1


def build_tokenizer() -> Tokenizer:
    vocab = {UNK: 0, EOS: EOS_ID} | {word: i + 2 for i, word in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    # Punctuation splits off words as the corpus spaces it, so typed text ("lily.") has no
    # unknown words the corpus would not have; "[EOS]" is an added token, matched before.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    # Word-level decoding joins with single spaces, which is exactly the corpus's own spacing.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json`."""
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token=UNK, eos_token=EOS)
    fast.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> Tokenizer:
    """The raw `tokenizers` object (cheap: no `transformers` import)."""
    return Tokenizer.from_file(str(directory / "tokenizer.json"))


def tokenizer_vocab(tokenizer: Tokenizer) -> list[str]:
    """Token strings indexed by id."""
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    assert sorted(by_id) == list(range(len(by_id))), "token ids are not contiguous"
    return [by_id[i] for i in range(len(by_id))]
