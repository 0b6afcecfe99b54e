"""`paginate` cuts the rows a read fetched (limit + 1) into a page and its next cursor."""

import pytest

from locattr.storage.records import EdgeHit, EdgeSearchPage, Page, SearchHit, SearchPage, paginate


def cursor_of(row: tuple[int, str]) -> str:
    return f"i_{row[0]}"


ROWS = [(1, "a"), (2, "b"), (3, "c")]


def test_a_following_row_gives_the_cursor_of_the_last_item() -> None:
    page = paginate(ROWS, 2, cursor_of)
    assert page == Page([(1, "a"), (2, "b")], "i_2")


@pytest.mark.parametrize("limit", [3, 4])
def test_the_last_page_has_no_cursor(limit: int) -> None:
    """No row beyond the limit: whether the page is full or not, nothing follows."""
    assert paginate(ROWS, limit, cursor_of) == Page(ROWS, None)


def test_an_empty_page() -> None:
    assert paginate([], 5, cursor_of) == Page([], None)


def test_more_than_one_extra_row_is_a_bug() -> None:
    with pytest.raises(AssertionError, match="limit \\+ 1"):
        paginate(ROWS, 1, cursor_of)


def test_map_keeps_the_cursor() -> None:
    page = paginate(ROWS, 2, cursor_of).map(lambda row: row[1])
    assert page == Page(["a", "b"], "i_2")


def test_search_pages_are_pages_of_their_hits_and_sequences_of_prompt_ids() -> None:
    hits = [SearchHit(7, 1.0, {}, "x", ["x"]), SearchHit(3, 0.5, {}, "y", ["y"])]
    page = SearchPage(items=hits, next_cursor="r_0.5_3", total=9, unknown_keys=[])
    assert isinstance(page, Page) and page.hits is page.items
    assert list(page) == page.prompt_ids == [7, 3] and page[-1] == 3 and len(page) == 2
    edge = EdgeHit(4, 0.2, -0.2, 0, 1, "z", ["z"])
    edges = EdgeSearchPage(
        items=[edge], next_cursor=None, source="a:0", target="b:1", min_abs=0.1, total=1
    )
    assert isinstance(edges, Page) and edges.hits == [edge]
