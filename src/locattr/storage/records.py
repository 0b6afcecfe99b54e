"""Plain records that cross the storage boundary (in from generate, out to the API and CLI)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from locattr.graph import Graph
from locattr.seed_pairs import seed_pairs_json

JsonValue = object
T = TypeVar("T")
U = TypeVar("U")


def identity_for_tokens(token_ids: Sequence[int]) -> str:
    """A prompt identity from its token ids alone (for prompts from a file or given by hand)."""
    digest = hashlib.sha256(np.asarray(token_ids, dtype="<i8").tobytes()).hexdigest()
    return f"tokens:{digest[:32]}"


def identity_for_dataset(dataset: str, split: str, index: int) -> str:
    """A prompt identity from its place in a dataset: the window index after cutting."""
    return f"dataset:{dataset}:{split}:{index}"


@dataclass(frozen=True)
class LayerSlot:
    """Where a layer's component ids live: ``first_component_id + index``."""

    id: int
    first_component_id: int
    n_components: int


@dataclass(frozen=True)
class PromptRecord:
    """One prompt to store. The graph's nodes (alive units with their CI) feed the index.

    With ``keep_graph=False`` only the index is written (``locattr-generate --no-graphs``).
    """

    identity: str
    token_ids: Sequence[int]
    tokens: Sequence[str]
    graph: Graph
    source: Mapping[str, JsonValue] = field(default_factory=dict)
    keep_graph: bool = True

    def __post_init__(self) -> None:
        assert len(self.token_ids) == len(self.tokens), "token_ids and tokens differ in length"
        assert self.identity, "a prompt needs an identity"


@dataclass(frozen=True)
class PromptInfo:
    """A stored prompt, without its graph (`LocalAttrDB` gives it a ``load_graph`` that reads
    the graph when `pairs_json` asks for it)."""

    id: int
    identity: str
    token_ids: list[int]
    tokens: list[str]
    source: dict[str, JsonValue]
    n_nodes: int
    n_edges: int
    has_graph: bool
    load_graph: Callable[[], Graph | None] | None = field(default=None, repr=False, compare=False)

    def preview(self, width: int = 80) -> str:
        return preview_of(self.tokens, width)

    @property
    def pairs_json(self) -> str | None:
        """The graph in the original system's ``pairs`` format, as JSON text (`seed_pairs`);
        None when the prompt was stored without its graph."""
        if self.load_graph is None:
            raise ValueError("this prompt record cannot read its graph: get it from LocalAttrDB")
        graph = self.load_graph()
        return seed_pairs_json(graph) if graph is not None else None


def preview_of(tokens: Sequence[str], width: int = 80) -> str:
    """A prompt's text (token strings carry their own spaces), cut to `width`."""
    text = "".join(tokens).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list: its items, in the list's order, and the cursor to
    pass back for the next page (None on the last page)."""

    items: list[T]
    next_cursor: str | None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        """The same page with each item converted (rows into records)."""
        return Page([convert(item) for item in self.items], self.next_cursor)


def paginate(rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """The page of the first `limit` of `rows`, which a read fetched as ``limit + 1`` rows:
    the extra row, when there is one, says that another page follows, and the next cursor is
    `cursor_of` the page's last item (None when no row follows)."""
    assert len(rows) <= limit + 1, f"{len(rows)} rows for a page of {limit}: fetch limit + 1"
    items = list(rows[:limit])
    return Page(items, cursor_of(items[-1]) if len(rows) > limit else None)


@dataclass(frozen=True)
class ComponentStats:
    """How often a component fires across the stored prompts (CI >= the build threshold)."""

    key: str
    prompt_count: int
    mean_max_ci: float
    """Mean over the prompts where it fires of its largest CI in that prompt (0 if none)."""
    max_max_ci: float
    top_prompt_ids: list[int]
    """Prompts with the highest max CI first (ties: lower id first)."""
    mean_ci: float | None
    """Dataset mean CI from the activation contexts, when they were computed."""


@dataclass(frozen=True)
class ComponentDetails:
    """A component's statistics and its stored activation context (None when there is none)."""

    stats: ComponentStats
    activation_context: dict[str, Any] | None


def first_examples(context: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The activation context with only its first `n` (strongest) examples.

    Every per-example list is cut alike: the original's columns (``example_tokens``,
    ``example_ci``, ``example_active_pos``, ... : every list named ``example_*``) or a list
    ``examples`` of records. Token statistics (``pr_*``, ``predicted_*``) are kept whole.
    """
    return {
        name: value[:n]
        if isinstance(value, list) and (name == "examples" or name.startswith("example_"))
        else value
        for name, value in context.items()
    }


@dataclass(frozen=True)
class ComponentSummary:
    key: str
    layer: str
    index: int
    prompt_count: int
    mean_max_ci: float
    max_max_ci: float
    mean_ci: float | None


@dataclass(frozen=True)
class ComponentMatch:
    """A queried component in one matching prompt: its max CI, where it fires, and its CI
    summed over those positions (its CI mass, which the ``specificity`` ranking weighs)."""

    max_ci: float
    positions: list[int]
    ci_sum: float


@dataclass(frozen=True)
class SearchHit:
    prompt_id: int
    score: float
    """Sum over the queried components present in the prompt of their CI sum there times their
    idf (``specificity``), or of their max CI there (``max_ci``): see `SearchPage.rank`."""
    matches: dict[str, ComponentMatch]
    preview: str
    """The prompt's text, shortened (`preview_of`)."""
    tokens: list[str]
    """The prompt's tokens, which `matches` positions index (to mark them in a preview)."""


@dataclass(frozen=True)
class SearchPage(Page[SearchHit], Sequence[int]):
    """One page of a ranked search (its `items` are its `hits`). Pass ``next_cursor`` back to
    get the next page.

    It is also the sequence of its prompt ids (``page[0]``, ``len(page)``, ``for id in
    page``), as the original system's search returned a list of ids.
    """

    total: int
    """Number of matching prompts over all pages."""
    unknown_keys: list[str]
    """Well-formed keys that name no component of this database (they match nothing; unknown
    excluded keys exclude nothing)."""
    rank: str = "specificity"
    """The ranking that scored the hits (`locattr.storage.queries.Rank`)."""
    idf: dict[str, float] = field(default_factory=dict)
    """Each known queried component's ``ln(1 + N / n)`` (its ``specificity`` weight)."""

    @property
    def hits(self) -> list[SearchHit]:
        return self.items

    @property
    def prompt_ids(self) -> list[int]:
        return [hit.prompt_id for hit in self.hits]

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, index: Any) -> Any:
        return self.prompt_ids[index]

    def __iter__(self) -> Iterator[int]:
        return (hit.prompt_id for hit in self.hits)


@dataclass(frozen=True)
class CofiringPartner:
    """A component firing in some of the same prompts as another one, A.

    With N prompts in the database, n_A and n_B the prompts where A and this one fire:
    ``lift = count × N / (n_A × n_B)`` (1 when they fire independently) and
    ``jaccard = count / (n_A + n_B - count)`` (1 when they fire in exactly the same prompts).
    """

    key: str
    count: int
    """Prompts where both fire."""
    prompt_count: int
    """n_B: prompts where this one fires."""
    lift: float
    jaccard: float


@dataclass(frozen=True)
class Cofiring:
    """The components that fire with one component, computed over every stored prompt."""

    key: str
    prompt_count: int
    """n_A: prompts where the component fires."""
    n_prompts: int
    """N: prompts in the database."""
    n_partners: int
    """Components firing with it in at least `min_count` prompts (all pages)."""
    partners: list[CofiringPartner]


@dataclass(frozen=True)
class GraphComponentStats:
    """Dataset statistics of a graph's components, by key `layer:index`."""

    mean_ci: dict[str, float]
    """Where one is stored (from the activation contexts)."""
    prompt_count: dict[str, int]
    """Stored prompts each fires in (those firing in none are left out)."""


@dataclass(frozen=True)
class Partner:
    """A component that one component exchanges attribution with, summed over every stored
    graph: the sum of the edge values between the two (signed), of their absolute values, and
    the number of prompts where they have an edge."""

    key: str
    total: float
    total_abs: float
    prompt_count: int


@dataclass(frozen=True)
class Partners:
    """A component's strongest upstream sources or downstream targets across the corpus."""

    key: str
    direction: str
    """``upstream`` (components whose edges end at this one) or ``downstream``."""
    n_prompts: int
    n_partners: int
    """Components with at least one edge to (or from) it, over all pages."""
    partners: list[Partner]


@dataclass(frozen=True)
class EdgeHit:
    """A prompt where an edge joins the two components: the strongest such edge there."""

    prompt_id: int
    max_abs: float
    value: float
    """The signed value of that edge."""
    source_position: int
    target_position: int
    preview: str
    tokens: list[str]


@dataclass(frozen=True)
class EdgeSearchPage(Page[EdgeHit]):
    """Prompts where component `source` drives `target` with |value| >= `min_abs`, strongest
    first (ties by prompt id); its `items` are its `hits`."""

    source: str
    target: str
    min_abs: float
    total: int

    @property
    def hits(self) -> list[EdgeHit]:
        return self.items
