"""The patterns the API declares for component keys and cursors say exactly what the parsers
accept: a client (or schemathesis) that follows the schema is never refused, and anything the
schema calls malformed is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locattr.storage import ComponentKey, ComponentKeyError, CursorError
from locattr.storage import queries as q
from locattr.storage.keys import _SPACE, KEY_PATTERN, key_list_pattern, split_keys

# Characters around which the parsers' decisions turn, and a few others.
TRICKY = st.sampled_from(list(" \t\n\xa0\u2003\x1c:,0123456789a._-eé²٣"))
KEYISH = st.text(TRICKY, max_size=24)


def accepted_key(text: str) -> bool:
    try:
        ComponentKey.parse(text)
    except ComponentKeyError:
        return False
    return True


def accepted_list(text: str, max_keys: int, min_keys: int) -> bool:
    keys = split_keys(text)
    return min_keys <= len(keys) <= max_keys and all(accepted_key(key) for key in keys)


def matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text) is not None


def test_the_whitespace_class_is_what_strip_removes() -> None:
    space = re.compile(f"[{_SPACE}]")
    assert all((space.fullmatch(c) is not None) == c.isspace() for c in map(chr, range(0x110000)))


@given(KEYISH)
def test_key_pattern_is_what_parse_accepts(text: str) -> None:
    assert matches(KEY_PATTERN, text) == accepted_key(text)


@given(st.from_regex(KEY_PATTERN, fullmatch=True))
def test_keys_drawn_from_the_pattern_parse(text: str) -> None:
    assert accepted_key(text)


@pytest.mark.parametrize(("max_keys", "min_keys"), [(2, 1), (3, 0)])
@given(st.lists(KEYISH, max_size=5).map(",".join))
def test_key_list_pattern_is_what_the_endpoints_accept(
    max_keys: int, min_keys: int, text: str
) -> None:
    pattern = key_list_pattern(max_keys, min_keys=min_keys)
    assert matches(pattern, text) == accepted_list(text, max_keys, min_keys)


@given(st.from_regex(key_list_pattern(64), fullmatch=True))
def test_key_lists_drawn_from_the_pattern_parse(text: str) -> None:
    assert accepted_list(text, 64, 1)


@pytest.mark.parametrize(("digits", "accepted"), [(20, True), (21, False)])
def test_an_index_has_at_most_20_digits(digits: int, accepted: bool) -> None:
    """A longer index names no component anyway, and `int` refuses thousands of digits."""
    key = "h" * 5000 + ":" + "9" * digits
    assert accepted_key(key) == accepted == matches(KEY_PATTERN, key)
    assert matches(key_list_pattern(2), f" {key} ,") == accepted


def test_the_list_patterns_compile_for_schema_validators() -> None:
    """jsonschema-rs treats a pattern it cannot compile as absent (then schemathesis draws
    values the server refuses as if they were well formed)."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    for pattern in (KEY_PATTERN, key_list_pattern(500), q.SEARCH_CURSOR_PATTERN):
        jsonschema_rs.Draft202012Validator({"pattern": pattern})


@given(st.from_regex(q.ID_CURSOR_PATTERN, fullmatch=True))
def test_id_cursors_drawn_from_the_pattern_decode(cursor: str) -> None:
    assert q.decode_id_cursor(cursor) >= 0


# The empty cursor the patterns also allow is the first page (callers test `if cursor`).
@given(st.from_regex(q.SEARCH_CURSOR_PATTERN, fullmatch=True).filter(bool))
def test_search_cursors_drawn_from_the_pattern_decode_for_their_ranking(cursor: str) -> None:
    rank = "max_ci" if cursor.startswith("s") else "specificity"
    q.SearchCursor.decode(cursor, rank)
    with pytest.raises(CursorError):
        q.SearchCursor.decode(cursor, "specificity" if rank == "max_ci" else "max_ci")


@given(st.from_regex(q.COMPONENT_CURSOR_PATTERN, fullmatch=True).filter(bool))
def test_component_cursors_drawn_from_the_pattern_decode(cursor: str) -> None:
    """(sort value, component id), as `reads.list_components` reads them, under the order
    whose tag the cursor carries."""
    assert cursor[0] in q.COMPONENT_SORT_TAGS.values()
    value, component_id = q.decode_cursor(cursor[0], cursor)
    assert isinstance(value, int | float) and isinstance(component_id, int)


@given(
    st.integers(0, 2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["max_ci", "specificity"]),
)
def test_cursors_handed_out_match_their_pattern_and_round_trip(
    prompt_id: int, score: float, rank: q.Rank
) -> None:
    cursor = q.SearchCursor(score, prompt_id).encode(rank)
    assert matches(q.SEARCH_CURSOR_PATTERN, cursor)
    assert q.SearchCursor.decode(cursor, rank) == q.SearchCursor(score, prompt_id)
    assert matches(q.ID_CURSOR_PATTERN, q.encode_id_cursor(prompt_id))
    assert q.decode_id_cursor(q.encode_id_cursor(prompt_id)) == prompt_id


@pytest.mark.parametrize("cursor", ["", "i", "i_", "i_1_", "x_1", "i_1.5", "i_1\n", "WyJpIiwxXQ"])
def test_malformed_id_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        q.decode_id_cursor(cursor) if cursor else q.decode_cursor("i", cursor)
