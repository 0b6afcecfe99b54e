"""The index's packed forms: prompts' component lists and CI values in units."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locattr.storage.component_lists import pack, unpack, unpack_many
from locattr.storage.index_rows import (
    CI_UNIT,
    from_ci_units,
    pack_ci_units,
    to_ci_units,
    unpack_ci_units,
)

ID_SETS = st.sets(st.integers(0, 2**31 - 1), max_size=60) | st.sets(
    st.integers(0, 3000), max_size=300
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ID_SETS, max_size=8))
def test_component_lists_round_trip_alone_and_together(lists: list[set[int]]) -> None:
    arrays = [np.array(sorted(ids), dtype=np.int64) for ids in lists]
    blobs = [pack(np.random.default_rng(0).permutation(a)) for a in arrays]  # any order in
    assert [unpack(b).tolist() for b in blobs] == [a.tolist() for a in arrays]
    together = unpack_many(blobs)
    expected = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    assert together.tolist() == expected.tolist()


def test_near_ids_take_two_bytes_each_and_far_ones_four() -> None:
    assert len(pack(np.arange(0, 3000, 7))) == 1 + 2 * len(range(0, 3000, 7))
    assert len(pack(np.array([5, 70_000]))) == 1 + 4 * 2


def test_component_lists_refuse_repeated_or_negative_ids() -> None:
    with pytest.raises(ValueError, match="distinct and non-negative"):
        pack(np.array([3, 3]))
    with pytest.raises(ValueError, match="distinct and non-negative"):
        pack(np.array([-1, 2]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 5000), max_size=50))
def test_ci_values_keep_to_the_unit_and_pack_exactly(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    kept = from_ci_units(to_ci_units(array))
    assert np.all(np.abs(kept - array) <= CI_UNIT / 2 + 1e-9 * array)
    unpacked = unpack_ci_units(pack_ci_units(kept), len(kept))
    np.testing.assert_array_equal(unpacked, kept)  # what SQL's units * 1e-6 gives, bit for bit
    fits = all(v <= (2**31 - 1) * CI_UNIT for v in kept)
    assert len(pack_ci_units(kept)) == (4 if fits else 8) * len(kept)
