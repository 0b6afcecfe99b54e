"""Dataset windows on small local datasets, offline, with the demo run's tokenizer.

Expected windows are computed here from the rules in spd-format.md §7 (join a batch with the EOS
string, 20 character chunks, encode each, drop the remainder), with the row order of a seeded
full shuffle (`np.random.default_rng(seed).permutation`, as `Dataset.shuffle(seed)` documents)
or, for a streamed single file with `buffer_size=1`, the file's own order.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import datasets.config
import numpy as np
import pytest

from locattr.compute.config import load_spd_config
from locattr.compute.tokenizer_loading import load_tokenizer
from locattr.datasets import DatasetError, DatasetSpec, TextTokenizer, dataset_windows
from locattr.demo import demo_run_path
from locattr.demo.corpus import stories

EOS = "[EOS]"
EOS_ID = 1  # in the demo tokenizer


@pytest.fixture(autouse=True)
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Hub access, and the `datasets` cache (arrow files of local data) under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    run = demo_run_path()
    tok = load_tokenizer(load_spd_config(run / "final_config.yaml"), run, None)
    assert tok.eos_token == EOS and tok.eos_token_id == EOS_ID
    return tok


def write_jsonl(path: Path, texts: Sequence[str], column: str = "story") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({column: text, "id": i}) + "\n")
    return path


def story_dir(root: Path, n_train: int, n_test: int = 20) -> Path:
    write_jsonl(root / "train.jsonl", stories("train", n_train, seed=1))
    write_jsonl(root / "test.jsonl", stories("heldout", n_test, seed=2))
    return root


def windows(
    spec: DatasetSpec, tokenizer: Any, n_ctx: int, seed: int, start: int = 0, *, stop: int
) -> list[list[int]]:
    got = list(dataset_windows(spec, tokenizer, n_ctx, seed, start=start, stop=stop))
    assert [index for index, _ in got] == list(range(start, stop))
    return [ids for _, ids in got]


def all_windows(spec: DatasetSpec, tokenizer: Any, n_ctx: int, seed: int) -> list[list[int]]:
    """Every window the dataset has (read until the 'gives only' error)."""
    got: list[list[int]] = []
    with pytest.raises(DatasetError, match="gives only"):
        for _, ids in dataset_windows(spec, tokenizer, n_ctx, seed, stop=10**9):
            got.append(ids)
    return got


def cut_batch(texts: Sequence[str], tokenizer: Any, n_ctx: int, lower_eos: bool = False) -> list:
    joined = EOS.join(texts)
    size = -(-len(joined) // 20)  # ceil
    ids: list[int] = []
    for i in range(20):
        chunk = joined[i * size : (i + 1) * size]
        if lower_eos:
            chunk = chunk.replace("[eos]", EOS)
        ids += tokenizer.encode(chunk)
    usable = len(ids) - len(ids) % n_ctx
    return [ids[i : i + n_ctx] for i in range(0, usable, n_ctx)]


def shuffled_in_shards(texts: Sequence[str], seed: int) -> list[list[str]]:
    """The batches of a non-streaming split of < 1000 rows per shard: the seeded permutation,
    cut into 10 contiguous shards, the first len % 10 one row longer."""
    order = [texts[int(i)] for i in np.random.default_rng(seed).permutation(len(texts))]
    size, extra = divmod(len(order), 10)
    bounds = [0, *itertools.accumulate(size + (k < extra) for k in range(10))]
    return [order[bounds[k] : bounds[k + 1]] for k in range(10)]


# --- text: cutting semantics ------------------------------------------------------------


def test_streamed_file_in_file_order_is_joined_cut_and_encoded_per_chunk(
    tmp_path: Path, tokenizer: Any
) -> None:
    texts = [
        "once there was a cat named max",
        "the dog was happy .",
        "in the end , ella was happy .",
    ]
    path = write_jsonl(tmp_path / "three.jsonl", texts)
    spec = DatasetSpec(str(path), "train", "story", streaming=True, buffer_size=1)
    joined = (
        "once there was a cat named max[EOS]the dog was happy .[EOS]in the end , ella was happy ."
    )
    assert len(joined) == 88  # 18 chunks of 5 characters (the last one 3), then 2 empty ones
    chunks = [joined[i : i + 5] for i in range(0, 100, 5)]
    assert chunks[6] == "[EOS]" and chunks[10:12] == ["py .[", "EOS]i"]
    ids = [token for chunk in chunks for token in tokenizer.encode(chunk)]
    expected = [ids[i : i + 4] for i in range(0, len(ids) - 3, 4)]
    got = all_windows(spec, tokenizer, 4, seed=0)
    assert got == expected
    assert got == cut_batch(texts, tokenizer, 4)
    # The first "[EOS]" is a whole chunk and one EOS token; the second straddles two chunks and
    # is none, as in SPD.
    flat = [t for w in got for t in w]
    assert flat.count(EOS_ID) == 1
    assert flat[len([t for c in chunks[:6] for t in tokenizer.encode(c)])] == EOS_ID
    # Chunks split words ("name" | "d max"), so the ids differ from encoding the text whole.
    assert flat[:8] != tokenizer.encode(texts[0])[:8]


def test_non_streaming_matches_seeded_permutation_in_ten_shards(
    tmp_path: Path, tokenizer: Any
) -> None:
    root = story_dir(tmp_path / "data", n_train=103)
    texts = stories("train", 103, seed=1)
    spec = DatasetSpec(str(root), "train", "story")
    for seed in (0, 7):
        expected = [
            w for batch in shuffled_in_shards(texts, seed) for w in cut_batch(batch, tokenizer, 16)
        ]
        assert all_windows(spec, tokenizer, 16, seed) == expected


def test_tiny_split_maps_one_row_per_shard_so_no_eos_is_joined(
    tmp_path: Path, tokenizer: Any
) -> None:
    text = "once there was a boy named max . max has two ducks . in the end , max was happy ."
    write_jsonl(tmp_path / "d" / "train.jsonl", [text] * 3)
    got = all_windows(DatasetSpec(str(tmp_path / "d"), "train", "story"), tokenizer, 8, seed=0)
    one = cut_batch([text], tokenizer, 8)
    assert got == one * 3
    assert EOS_ID not in {t for w in got for t in w}


def test_windows_are_n_ctx_long_and_cross_stories_with_eos(tmp_path: Path, tokenizer: Any) -> None:
    root = story_dir(tmp_path / "data", n_train=300)
    got = windows(DatasetSpec(str(root), "train", "story"), tokenizer, 128, seed=0, stop=40)
    assert all(len(w) == 128 for w in got)
    assert all(0 <= t < len(tokenizer) for w in got for t in w)
    with_eos = sum(EOS_ID in w for w in got)
    assert with_eos >= 36, f"stories (~60 tokens) joined by EOS: only {with_eos}/40 windows"


def test_deterministic_per_seed_and_different_across_seeds(tmp_path: Path, tokenizer: Any) -> None:
    root = story_dir(tmp_path / "data", n_train=200)
    for streaming in (False, True):
        spec = DatasetSpec(str(root), "train", "story", streaming=streaming, buffer_size=50)
        first = windows(spec, tokenizer, 16, seed=3, stop=30)
        assert windows(spec, tokenizer, 16, seed=3, stop=30) == first
        assert windows(spec, tokenizer, 16, seed=4, stop=30) != first


@pytest.mark.parametrize("streaming", [False, True])
def test_a_range_is_the_slice_of_the_prefix(
    tmp_path: Path, tokenizer: Any, streaming: bool
) -> None:
    root = story_dir(tmp_path / "data", n_train=200)
    spec = DatasetSpec(str(root), "train", "story", streaming=streaming, buffer_size=64)
    prefix = windows(spec, tokenizer, 16, seed=5, stop=120)
    for start, stop in ((0, 1), (17, 18), (30, 95), (119, 120), (50, 50)):
        assert windows(spec, tokenizer, 16, seed=5, start=start, stop=stop) == prefix[start:stop]


def test_reading_stops_at_the_batch_holding_the_last_window(tmp_path: Path, tokenizer: Any) -> None:
    calls: list[str] = []

    class Counting:
        eos_token = EOS

        def encode(self, text: str) -> list[int]:
            calls.append(text)
            return tokenizer.encode(text)

    counting: TextTokenizer = Counting()
    root = story_dir(tmp_path / "data", n_train=200)
    spec = DatasetSpec(str(root), "train", "story")
    per_batch = len(
        cut_batch(shuffled_in_shards(stories("train", 200, seed=1), 0)[0], tokenizer, 16)
    )
    windows(spec, counting, 16, seed=0, stop=1)
    assert len(calls) == 20  # one batch: 20 chunks
    calls.clear()
    windows(spec, counting, 16, seed=0, start=per_batch - 1, stop=per_batch)
    assert len(calls) == 20
    calls.clear()
    windows(spec, counting, 16, seed=0, start=per_batch, stop=per_batch + 1)
    assert len(calls) == 40


def test_streaming_cuts_the_same_way_in_a_buffered_order(tmp_path: Path, tokenizer: Any) -> None:
    """Streaming batches are 1000 rows of the stream (no shards); with buffer_size=1 the stream
    is the file's order. Other buffers give other orders than the non-streaming permutation."""
    texts = stories("train", 120, seed=1)
    path = write_jsonl(tmp_path / "s.jsonl", texts)
    in_order = DatasetSpec(str(path), "train", "story", streaming=True, buffer_size=1)
    assert all_windows(in_order, tokenizer, 16, seed=9) == cut_batch(texts, tokenizer, 16)
    buffered = DatasetSpec(str(path), "train", "story", streaming=True, buffer_size=10)
    full = DatasetSpec(str(path), "train", "story")
    streamed = windows(buffered, tokenizer, 16, seed=0, stop=100)
    assert all(len(w) == 16 for w in streamed)
    assert streamed != windows(full, tokenizer, 16, seed=0, stop=100)
    assert streamed != windows(in_order, tokenizer, 16, seed=0, stop=100)


def test_simplestories_names_restore_a_lowercase_eos(tmp_path: Path, tokenizer: Any) -> None:
    texts = ["the cat [eos] the dog", "max was happy [eos] ella was sad"] * 10
    for name, lower in (("SimpleStories", True), ("Other", False)):
        write_jsonl(tmp_path / name / "train.jsonl", texts)
        spec = DatasetSpec(str(tmp_path / name), "train", "story", streaming=True, buffer_size=1)
        assert all_windows(spec, tokenizer, 8, seed=0) == cut_batch(texts, tokenizer, 8, lower)
    assert cut_batch(texts, tokenizer, 8, True) != cut_batch(texts, tokenizer, 8, False)


# --- pre-tokenized rows and saved datasets ----------------------------------------------


def token_rows(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 150, size=int(rng.integers(4, 20))).tolist() for _ in range(n)]


@pytest.mark.parametrize("streaming", [False, True])
def test_pre_tokenized_parquet_takes_first_n_ctx_and_skips_short_rows(
    tmp_path: Path, streaming: bool
) -> None:
    rows = token_rows(60)
    path = tmp_path / "tok" / "train.parquet"
    path.parent.mkdir()
    datasets.Dataset.from_dict({"input_ids": rows, "n": list(range(60))}).to_parquet(str(path))
    spec = DatasetSpec(str(path.parent), "train", "input_ids", is_tokenized=True)
    if streaming:
        spec = DatasetSpec(spec.name, "train", "input_ids", True, streaming=True, buffer_size=1)
        order = rows
    else:
        order = [rows[i] for i in np.random.default_rng(2).permutation(60)]
    expected = [r[:10] for r in order if len(r) >= 10]
    assert 0 < len(expected) < 60
    assert all_windows(spec, None, 10, seed=2) == expected


def test_saved_dataset_dict_and_saved_dataset(tmp_path: Path, tokenizer: Any) -> None:
    rows = token_rows(40)
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"input_ids": rows}),
            "test": datasets.Dataset.from_dict({"input_ids": rows[:5]}),
        }
    )
    splits.save_to_disk(str(tmp_path / "dict"))
    spec = DatasetSpec(str(tmp_path / "dict"), "test", "input_ids", is_tokenized=True)
    expected = [rows[:5][i][:4] for i in np.random.default_rng(1).permutation(5)]
    assert windows(spec, tokenizer, 4, seed=1, stop=5) == expected
    streamed = DatasetSpec(spec.name, "train", "input_ids", True, streaming=True)
    assert len(windows(streamed, None, 4, seed=1, stop=40)) == 40

    texts = stories("train", 50, seed=1)
    datasets.Dataset.from_dict({"story": texts}).save_to_disk(str(tmp_path / "one"))
    for split in ("train", "anything"):  # no split recorded: it answers to any name
        spec = DatasetSpec(str(tmp_path / "one"), split, "story")
        expected = [w for b in shuffled_in_shards(texts, 0) for w in cut_batch(b, tokenizer, 16)]
        assert all_windows(spec, tokenizer, 16, seed=0) == expected


def test_single_jsonl_file_is_split_train(tmp_path: Path, tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "stories.jsonl", stories("train", 30, seed=1))
    assert len(windows(DatasetSpec(str(path), "train", "story"), tokenizer, 16, 0, stop=5)) == 5
    with pytest.raises(DatasetError, match="no such split; its splits are train$"):
        dataset_windows(DatasetSpec(str(path), "test", "story"), tokenizer, 16, 0, stop=5)


# --- errors -------------------------------------------------------------------------------


def test_without_the_datasets_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tokenizer: Any
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    root = story_dir(tmp_path / "data", n_train=20)
    with pytest.raises(DatasetError, match=r"pip install 'locattr\[datasets\]'"):
        dataset_windows(DatasetSpec(str(root), "train", "story"), tokenizer, 16, 0, stop=1)


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_dataset_not_in_the_cache_while_offline(tokenizer: Any, streaming: bool) -> None:
    spec = DatasetSpec("SimpleStories/SimpleStories", "train", "story", streaming=streaming)
    with pytest.raises(DatasetError) as info:
        dataset_windows(spec, tokenizer, 16, 0, stop=1)
    message = str(info.value)
    assert "cannot load dataset 'SimpleStories/SimpleStories'" in message
    assert "--prompts-file" in message and "local directory" in message


def test_missing_local_path(tmp_path: Path, tokenizer: Any) -> None:
    for name in (str(tmp_path / "nope"), "./no/such/dir"):
        with pytest.raises(DatasetError, match="does not exist"):
            dataset_windows(DatasetSpec(name, "train", "story"), tokenizer, 16, 0, stop=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no data files in the directory"):
        dataset_windows(
            DatasetSpec(str(tmp_path / "empty"), "train", "story"), tokenizer, 8, 0, stop=1
        )


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_split_lists_the_splits(tmp_path: Path, tokenizer: Any, streaming: bool) -> None:
    root = story_dir(tmp_path / "data", n_train=20)
    spec = DatasetSpec(str(root), "validation", "story", streaming=streaming)
    with pytest.raises(DatasetError, match="split 'validation': .*its splits are test, train"):
        dataset_windows(spec, tokenizer, 16, 0, stop=1)


def test_saved_dataset_with_another_recorded_split(tmp_path: Path, tokenizer: Any) -> None:
    root = story_dir(tmp_path / "data", n_train=20)
    loaded = datasets.load_dataset(str(root), split="test")
    assert isinstance(loaded, datasets.Dataset)
    loaded.save_to_disk(str(tmp_path / "saved"))
    spec = DatasetSpec(str(tmp_path / "saved"), "train", "story")
    with pytest.raises(DatasetError, match="its splits are test$"):
        dataset_windows(spec, tokenizer, 16, 0, stop=1)


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_column_lists_the_columns(tmp_path: Path, tokenizer: Any, streaming: bool) -> None:
    root = story_dir(tmp_path / "data", n_train=20)
    spec = DatasetSpec(str(root), "train", "text", streaming=streaming)
    with pytest.raises(DatasetError, match="no column 'text'; its columns are story, id"):
        dataset_windows(spec, tokenizer, 16, 0, stop=1)


@pytest.mark.parametrize("streaming", [False, True])
def test_too_few_windows_says_how_many(tmp_path: Path, tokenizer: Any, streaming: bool) -> None:
    root = story_dir(tmp_path / "data", n_train=20, n_test=30)
    spec = DatasetSpec(str(root), "test", "story", streaming=streaming)
    available = all_windows(spec, tokenizer, 16, seed=0)
    assert len(available) > 10
    got: list[list[int]] = []
    pattern = rf"gives only {len(available)} windows of 16 tokens, but windows 5\.\.9999 were"
    with pytest.raises(DatasetError, match=pattern):
        for _, ids in dataset_windows(spec, tokenizer, 16, 0, start=5, stop=10_000):
            got.append(ids)
    assert got == available[5:]


def test_too_few_long_rows_when_pre_tokenized(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"ids": [[1, 2, 3], [1, 2], [4, 5, 6, 7]]}).save_to_disk(
        str(tmp_path / "t")
    )
    spec = DatasetSpec(str(tmp_path / "t"), "train", "ids", is_tokenized=True)
    with pytest.raises(DatasetError, match="gives only 2 rows with at least 3 token ids"):
        list(dataset_windows(spec, None, 3, 0, stop=3))


def test_column_of_the_wrong_kind(tmp_path: Path, tokenizer: Any) -> None:
    root = story_dir(tmp_path / "data", n_train=20)
    as_tokens = DatasetSpec(str(root), "train", "story", is_tokenized=True)
    with pytest.raises(DatasetError, match="holds str values, not lists of token ids"):
        list(dataset_windows(as_tokens, tokenizer, 16, 0, stop=1))
    as_text = DatasetSpec(str(root), "train", "id")
    with pytest.raises(DatasetError, match="holds int values, not text"):
        list(dataset_windows(as_text, tokenizer, 16, 0, stop=1))


def test_text_needs_a_tokenizer_with_an_eos_token(tmp_path: Path) -> None:
    class NoEos:
        eos_token = None

        def encode(self, text: str) -> list[int]:
            return []

    root = story_dir(tmp_path / "data", n_train=20)
    spec = DatasetSpec(str(root), "train", "story")
    with pytest.raises(DatasetError, match="no EOS token"):
        dataset_windows(spec, NoEos(), 16, 0, stop=1)
    with pytest.raises(DatasetError, match="needs a tokenizer"):
        dataset_windows(spec, None, 16, 0, stop=1)
