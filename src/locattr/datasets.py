"""Token windows cut from a Hugging Face dataset the way SPD's LM data loader cuts them.

`dataset_windows(spec, tokenizer, n_ctx, seed, start=a, stop=b)` yields windows a..b-1 of the
sequence SPD's `create_data_loader` (Dec-2025, `shuffle_each_epoch=False`, batch size 1) would
feed, each as `(window index, n_ctx token ids)`:

1. Load the split (`datasets.load_dataset(name, streaming=...)`, or a local path, see below) and
   shuffle the rows with `seed`: a full permutation (`Dataset.shuffle(seed)`), or, when
   streaming, a buffered shuffle of `buffer_size` rows (`IterableDataset.shuffle`).
2. Text (`is_tokenized=False`): take the rows in batches as `map(batched=True)` forms them (1000
   rows; non-streaming, SPD maps with `num_proc=10`, so the shuffled rows are first split into
   10 contiguous shards and batches never cross a shard boundary). Per batch: join the texts
   with the tokenizer's EOS string, cut the result into 20 equal-length *character* chunks (a
   word can straddle two chunks), `tokenizer.encode` each chunk with its default special-token
   handling, concatenate, drop the tokens that do not fill a last window, and cut `n_ctx`-long
   windows. For datasets whose name contains "SimpleStories" a lower-cased EOS string in a
   chunk is restored to the EOS string first, as SPD does. Windows cross story boundaries and
   hold EOS tokens.
3. Pre-tokenized (`is_tokenized=True`): each row's column is a list of token ids; a window is
   the first `n_ctx` ids of a row. Rows shorter than `n_ctx` are skipped and take no index (SPD
   asserted that rows are exactly `n_ctx` long).

Windows are numbered 0, 1, ... in that order, so ranges [0, m) and [m, m + n) are disjoint sets
of windows. Streaming and non-streaming loading cut windows the same way but give different
orders (a buffered shuffle is not a permutation of the whole split, and streaming batches are
not split into shards).

Where the data comes from (`DatasetSpec.name`):

- an existing local directory written by `save_to_disk`: `datasets.load_from_disk`. A saved
  `DatasetDict` offers its splits; a saved `Dataset` is one split, named by the split recorded
  in it (any requested split name is accepted when none is recorded);
- any other existing local directory: `load_dataset(directory)`, which reads the data files in
  it (.jsonl/.json/.parquet/.csv/...) and names splits after the files (`train.jsonl`,
  `test.jsonl`; a directory of other names is one split, `train`);
- an existing local .jsonl/.json/.parquet/.csv file: that file, as split `train`;
- a name that looks like a path (starts with `/`, `.` or `~`, or has more than one `/`) and
  does not exist: an error;
- anything else: a Hugging Face Hub dataset name, loaded from the local `datasets` cache, or
  downloaded when the Hub can be reached.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from jaxtyping import Int

from locattr.errors import LocattrError

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

ROWS_PER_BATCH = 1000  # `datasets.map(batched=True)`'s default batch size, which SPD kept
CHUNKS_PER_BATCH = 20  # SPD cuts each batch's joined text into this many character chunks
MAP_NUM_PROC = 10  # SPD's `num_proc` when mapping a non-streaming dataset

_DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_INSTALL_HINT = "pip install 'locattr[datasets]'"
_ALTERNATIVES = (
    "give the prompts with --prompts-file, or point the dataset name at a local directory "
    "(data files, or a dataset saved with `save_to_disk`)"
)


class DatasetError(LocattrError):
    """A dataset, split or column that cannot give the windows asked for."""


class TextTokenizer(Protocol):
    """What cutting text needs of a tokenizer (a `transformers` tokenizer has it)."""

    @property
    def eos_token(self) -> str | None: ...

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class DatasetSpec:
    """Which rows prompts are cut from; the fields mirror SPD's LM task config."""

    name: str
    """Hugging Face Hub name, or a local path (see the module docstring)."""
    split: str
    """A split name (`train`, `test`, ...); slicing syntax such as `train[:10%]` is not read."""
    column: str
    """The text column, or with `is_tokenized` the column of token-id lists."""
    is_tokenized: bool = False
    streaming: bool = False
    buffer_size: int = 1000
    """Rows in the shuffle buffer when streaming."""

    def __post_init__(self) -> None:
        if self.buffer_size < 1:
            raise DatasetError(f"buffer_size must be at least 1, got {self.buffer_size}")

    @property
    def restores_lowercase_eos(self) -> bool:
        """SPD's `to_lower`: on for datasets whose name contains "SimpleStories"."""
        return "SimpleStories" in self.name

    def describe(self) -> str:
        return f"dataset {self.name!r} split {self.split!r}"


def dataset_windows(
    spec: DatasetSpec,
    tokenizer: TextTokenizer | None,
    n_ctx: int,
    seed: int,
    *,
    start: int = 0,
    stop: int,
) -> Iterator[tuple[int, list[int]]]:
    """Windows `start`..`stop - 1` (window index, `n_ctx` token ids), cut as the module says.

    Deterministic in (`spec`, tokenizer, `n_ctx`, `seed`); the windows of [a, b) are exactly
    those of [0, b) from index a on. Loading the dataset and checking the split and column
    happen at the call; the rows are read lazily while iterating, batch by batch, and reading
    stops once window `stop - 1` was produced. Windows before `start` are tokenized (their
    number depends on the text) but never materialized. `tokenizer` may be None only for a
    pre-tokenized dataset.

    Raises `DatasetError` here when `datasets` is not installed, the dataset cannot be loaded
    (not local and not in the `datasets` cache with the Hub unreachable), the split or column
    is missing, or the tokenizer has no EOS token; and while iterating, after the last window
    the dataset has, when that is fewer than `stop` (the message says how many there are).
    """
    assert n_ctx >= 1, f"n_ctx must be positive, got {n_ctx}"
    assert 0 <= start <= stop, f"need 0 <= start <= stop, got start={start}, stop={stop}"
    if spec.is_tokenized:
        blocks = _token_row_blocks(_read_batches(spec, seed), spec, n_ctx)
    else:
        if tokenizer is None:
            raise DatasetError(
                f"{spec.describe()} holds text, which needs a tokenizer: load the run with "
                "its tokenizer, or use a pre-tokenized dataset (is_tokenized)"
            )
        eos = tokenizer.eos_token
        if not eos:
            raise DatasetError(
                f"the tokenizer has no EOS token, which SPD joins the texts of {spec.describe()} "
                "with: use a tokenizer that defines `eos_token`, or a pre-tokenized dataset"
            )
        blocks = (
            _cut_text_batch(texts, tokenizer, eos, n_ctx, spec.restores_lowercase_eos)
            for texts in _text_batches(_read_batches(spec, seed), spec)
        )
    return _take(blocks, start, stop, spec, n_ctx)


def _take(
    blocks: Iterable[Int[np.ndarray, "k n_ctx"]],
    start: int,
    stop: int,
    spec: DatasetSpec,
    n_ctx: int,
) -> Iterator[tuple[int, list[int]]]:
    first = 0  # index of the first window of the current block
    if start == stop:
        return
    for block in blocks:
        end = first + block.shape[0]
        for index in range(max(start, first), min(stop, end)):
            yield index, block[index - first].tolist()
        if end >= stop:
            return
        first = end
    rule = (
        f"rows with at least {n_ctx} token ids"
        if spec.is_tokenized
        else f"windows of {n_ctx} tokens"
    )
    raise DatasetError(
        f"{spec.describe()} gives only {first} {rule}, but windows {start}..{stop - 1} were "
        "asked for: ask for fewer windows (prompts plus activation-context windows), a "
        "shorter n_ctx, or a larger split"
    )


def _cut_text_batch(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    eos: str,
    n_ctx: int,
    restore_lowercase_eos: bool,
) -> Int[np.ndarray, "k n_ctx"]:
    """One `map` batch of texts as SPD's `tokenize_and_concatenate` cuts it."""
    joined = eos.join(texts)
    chunk_length = (len(joined) - 1) // CHUNKS_PER_BATCH + 1
    chunks = [joined[i * chunk_length : (i + 1) * chunk_length] for i in range(CHUNKS_PER_BATCH)]
    if restore_lowercase_eos:
        chunks = [chunk.replace(eos.lower(), eos) for chunk in chunks]
    ids = [token for chunk in chunks for token in tokenizer.encode(chunk)]
    n_windows = len(ids) // n_ctx
    return np.asarray(ids[: n_windows * n_ctx], dtype=np.int64).reshape(n_windows, n_ctx)


def _token_row_blocks(
    batches: Iterable[list[Any]], spec: DatasetSpec, n_ctx: int
) -> Iterator[Int[np.ndarray, "k n_ctx"]]:
    for rows in batches:
        kept: list[Sequence[int]] = []
        for row in rows:
            if not isinstance(row, Sequence) or isinstance(row, str):
                raise DatasetError(
                    f"column {spec.column!r} of {spec.describe()} holds {type(row).__name__} "
                    "values, not lists of token ids: name the token-id column, or set "
                    "is_tokenized to false for a text column"
                )
            if len(row) >= n_ctx:
                kept.append(row[:n_ctx])
        yield np.asarray(kept, dtype=np.int64).reshape(len(kept), n_ctx)


def _text_batches(batches: Iterable[list[Any]], spec: DatasetSpec) -> Iterator[list[str]]:
    for texts in batches:
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise DatasetError(
                f"column {spec.column!r} of {spec.describe()} holds {type(bad[0]).__name__} "
                "values, not text: name the text column, or set is_tokenized for a column of "
                "token ids"
            )
        yield texts


def _read_batches(spec: DatasetSpec, seed: int) -> Iterator[list[Any]]:
    """The shuffled column's values, in the batches SPD's `map` sees (see the module doc)."""
    rows = _load_split(spec)
    if spec.streaming:
        return _stream_batches(
            _as_iterable(rows).shuffle(seed=seed, buffer_size=spec.buffer_size), spec
        )
    table = _as_table(rows).select_columns([spec.column]).shuffle(seed=seed, keep_in_memory=True)
    ranges = _plain_batches(len(table)) if spec.is_tokenized else _map_batches(len(table))
    return (table[lo:hi][spec.column] for lo, hi in ranges)


def _map_batches(n_rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges of `map(batched=True, num_proc=10)`: contiguous shards (the first
    `n_rows % shards` one row longer), then 1000-row batches inside each shard."""
    n_shards = min(MAP_NUM_PROC, n_rows)
    if n_shards == 0:
        return
    size, extra = divmod(n_rows, n_shards)
    for shard in range(n_shards):
        lo = shard * size + min(shard, extra)
        hi = lo + size + (1 if shard < extra else 0)
        for batch_lo in range(lo, hi, ROWS_PER_BATCH):
            yield batch_lo, min(batch_lo + ROWS_PER_BATCH, hi)


def _plain_batches(n_rows: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n_rows, ROWS_PER_BATCH):
        yield lo, min(lo + ROWS_PER_BATCH, n_rows)


def _stream_batches(rows: IterableDataset, spec: DatasetSpec) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, ROWS_PER_BATCH)):
        if spec.column not in batch[0]:
            raise _missing_column(spec, list(batch[0]))
        yield [row[spec.column] for row in batch]


def _load_split(spec: DatasetSpec) -> Dataset | IterableDataset:
    """The split asked for, with its column checked; streamed when `spec.streaming`."""
    datasets = _import_datasets()
    local = _local_path(spec.name)
    splits = _load_hub(datasets, spec) if local is None else _load_local(datasets, local, spec)
    if spec.split not in splits:
        raise DatasetError(
            f"{spec.describe()}: there is no such split; its splits are "
            f"{', '.join(sorted(splits)) or '(none)'}"
        )
    rows = splits[spec.split].with_format(None)  # plain lists, whatever format was saved
    if spec.streaming and isinstance(rows, datasets.Dataset):
        rows = rows.to_iterable_dataset()
    columns = rows.column_names  # None for some streamed sources: checked on the first row
    if columns is not None and spec.column not in columns:
        raise _missing_column(spec, columns)
    return rows


def _missing_column(spec: DatasetSpec, columns: Sequence[str]) -> DatasetError:
    return DatasetError(
        f"{spec.describe()} has no column {spec.column!r}; its columns are "
        f"{', '.join(columns) or '(none)'}: set the column name (task_config.column_name)"
    )


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"reading prompts from a dataset needs the `datasets` package: {_INSTALL_HINT} "
            "(or give the prompts with --prompts-file)"
        ) from exc
    return datasets


def _local_path(name: str) -> Path | None:
    """The local path `name` means, or None for a Hub name."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise DatasetError(f"dataset path {name!r} does not exist: no file or directory {path}")
    return None


def _load_local(datasets: Any, path: Path, spec: DatasetSpec) -> Mapping[str, Any]:
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    if (path / "state.json").is_file():
        saved = datasets.load_from_disk(str(path))
        return {spec.split if saved.split is None else str(saved.split): saved}
    if path.is_dir():
        try:
            return datasets.load_dataset(str(path), streaming=spec.streaming)
        except FileNotFoundError as exc:
            raise DatasetError(
                f"no data files in the directory {path}: put .jsonl, .json, .parquet or .csv "
                "files there (named after their split, e.g. train.jsonl), or save a dataset "
                f"there with `save_to_disk` ({exc})"
            ) from exc
    builder = _DATA_FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DatasetError(
            f"cannot read {path} as a dataset: give a directory, or a "
            f"{'/'.join(_DATA_FILE_BUILDERS)} file"
        )
    return datasets.load_dataset(builder, data_files=str(path), streaming=spec.streaming)


def _load_hub(datasets: Any, spec: DatasetSpec) -> Mapping[str, Any]:
    try:
        return datasets.load_dataset(spec.name, streaming=spec.streaming)
    except OSError as exc:  # ConnectionError (Hub unreachable or offline), DatasetNotFoundError
        raise DatasetError(
            f"cannot load dataset {spec.name!r}: it is no local path, and the Hugging Face "
            "`datasets` cache does not hold it while the Hub cannot be reached (offline, or "
            f"HF_HUB_OFFLINE=1) or does not have it ({type(exc).__name__}: {exc}). Download it "
            f"once where the Hub is reachable, or {_ALTERNATIVES}"
        ) from exc


def _as_table(rows: Dataset | IterableDataset) -> Dataset:
    from datasets import Dataset

    assert isinstance(rows, Dataset), f"expected a Dataset when not streaming, got {type(rows)}"
    return rows


def _as_iterable(rows: Dataset | IterableDataset) -> IterableDataset:
    from datasets import IterableDataset

    assert isinstance(rows, IterableDataset), f"expected an IterableDataset, got {type(rows)}"
    return rows


__all__ = ["DatasetError", "DatasetSpec", "TextTokenizer", "dataset_windows"]
