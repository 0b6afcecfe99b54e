"""Search ranking, exclusion and co-firing on a demo database that `locattr-generate` builds,
served over HTTP from SQLite and from PostgreSQL, against oracles computed here from the stored
graphs with numpy (not from the index that the queries read)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import httpx
import numpy as np
import pytest

from locattr import LocalAttrDB
from locattr.api.settings import Settings
from locattr.graph import PSEUDO_LAYERS
from locattr.storage.index_rows import from_ci_units, to_ci_units
from tests.api.server import build_demo_db, running_server
from tests.conftest import BACKENDS, create_postgres_database, drop_postgres_database

N_PROMPTS = 80


@dataclass(frozen=True)
class Firing:
    max_ci: float
    ci_sum: float


@dataclass(frozen=True)
class Corpus:
    """Where each component fires, read from the graphs: key -> prompt id -> its CIs there."""

    n_prompts: int
    fires: dict[str, dict[int, Firing]]
    component_ids: dict[str, int]
    """Model order (layers as registered, then index), which breaks co-firing ties."""

    def prompts(self, key: str, min_ci: float = 0.0) -> set[int]:
        return {p for p, f in self.fires.get(key, {}).items() if f.max_ci >= min_ci}

    def idf(self, key: str) -> float:
        return float(np.log1p(self.n_prompts / len(self.fires[key])))

    def frequent(self, share: float) -> list[str]:
        """Keys firing in at least `share` of the prompts, most prompts first."""
        keys = [k for k, f in self.fires.items() if len(f) >= share * self.n_prompts]
        return sorted(keys, key=lambda k: (-len(self.fires[k]), k))


def corpus_from_graphs(target: str) -> Corpus:
    fires: dict[str, dict[int, Firing]] = {}
    with LocalAttrDB(target, readonly=True) as db:
        slots = db.layer_slots()
        prompt_ids = [info.id for info in db.iter_prompts()]
        for prompt_id in prompt_ids:
            graph = db.get_graph(prompt_id)
            assert graph is not None
            ci = graph.node_ci.astype(np.float64)
            for layer, component, value in zip(
                graph.node_layer.tolist(), graph.node_component.tolist(), ci.tolist(), strict=True
            ):
                if graph.layers[layer] in PSEUDO_LAYERS:
                    continue
                by_prompt = fires.setdefault(f"{graph.layers[layer]}:{component}", {})
                old = by_prompt.get(prompt_id, Firing(0.0, 0.0))
                by_prompt[prompt_id] = Firing(max(old.max_ci, value), old.ci_sum + value)
    ids = {
        k: slots[k.rsplit(":", 1)[0]].first_component_id + int(k.rsplit(":", 1)[1]) for k in fires
    }
    return Corpus(len(prompt_ids), {k: _at_index_precision(f) for k, f in fires.items()}, ids)


def _at_index_precision(fires: dict[int, Firing]) -> dict[int, Firing]:
    """The values as the index keeps them: to the nearest `CI_UNIT`."""

    def kept(value: float) -> float:
        return float(from_ci_units(to_ci_units(value)))

    return {p: Firing(kept(f.max_ci), kept(f.ci_sum)) for p, f in fires.items()}


@pytest.fixture(scope="module")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "demo.db"
    build_demo_db(path, N_PROMPTS, 32)
    return str(path)


@pytest.fixture(scope="module")
def corpus(demo_sqlite: str) -> Corpus:
    return corpus_from_graphs(demo_sqlite)


@pytest.fixture(scope="module", params=BACKENDS)
def client(request: pytest.FixtureRequest, demo_sqlite: str) -> Iterator[httpx.Client]:
    """The demo served from SQLite, or merged into PostgreSQL and served from there."""
    target, created = demo_sqlite, None
    if request.param == "postgres":
        target = created = create_postgres_database()
        with LocalAttrDB(created) as into, LocalAttrDB(demo_sqlite, readonly=True) as built:
            into.merge_from(built)
            into.build_postings()
    try:
        with (
            running_server(Settings(db=target)) as url,
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            yield http
    finally:
        if created is not None:
            drop_postgres_database(created)


def search_all(client: httpx.Client, **params: object) -> dict[str, object]:
    response = client.get("/api/search", params={"limit": 1000, **params})  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None and body["count"] == len(body["results"])
    return body


def oracle_search(
    corpus: Corpus,
    keys: list[str],
    *,
    mode: str = "all",
    exclude: tuple[str, ...] = (),
    min_ci: float = 0.0,
    rank: str = "specificity",
) -> dict[int, float]:
    """prompt id -> score of every matching prompt."""
    sets = [corpus.prompts(k, min_ci) for k in keys]
    matching = set.intersection(*sets) if mode == "all" else set.union(*sets)
    for key in exclude:
        matching -= corpus.prompts(key, min_ci)
    scores = {}
    for prompt_id in matching:
        score = 0.0
        for key, where in zip(keys, sets, strict=True):
            if prompt_id in where:
                firing = corpus.fires[key][prompt_id]
                score += firing.ci_sum * corpus.idf(key) if rank == "specificity" else firing.max_ci
        scores[prompt_id] = score
    return scores


def assert_results_match(body: dict[str, object], expected: dict[int, float]) -> None:
    results = body["results"]
    assert isinstance(results, list)
    assert sorted(r["id"] for r in results) == sorted(expected)
    for result in results:
        assert result["score"] == pytest.approx(expected[result["id"]], rel=1e-6), result["id"]
    ranked = [(-r["score"], r["id"]) for r in results]
    assert ranked == sorted(ranked), "best first, ties by prompt id"


def test_specificity_separates_prompts_where_common_components_fire(
    client: httpx.Client, corpus: Corpus
) -> None:
    """The issue's demo: two components firing in most prompts scored 2.00 in nearly all of
    them (max CI saturates at 1). Specificity scores are distinct for all but a few pairs —
    those where both components have CI exactly 1 wherever they fire, so that their CI mass
    is a count of positions and prompts with equal counts tie."""
    common = corpus.frequent(0.9)
    assert len(common) >= 20
    rng = np.random.default_rng(0)
    pairs = [list(pair) for pair in itertools.combinations(common, 2)]
    shares, max_ci_shares = [], []
    for index in rng.choice(len(pairs), size=30, replace=False).tolist():
        keys = pairs[index]
        body = search_all(client, components=",".join(keys))
        assert body["rank"] == "specificity"
        assert body["idf"] == pytest.approx({k: corpus.idf(k) for k in keys})
        assert_results_match(body, oracle_search(corpus, keys))
        scores = [r["score"] for r in body["results"]]  # type: ignore[union-attr]
        assert len(scores) >= 0.8 * corpus.n_prompts
        shares.append(len(set(scores)) / len(scores))
        by_max_ci = search_all(client, components=",".join(keys), rank="max_ci")
        assert_results_match(by_max_ci, oracle_search(corpus, keys, rank="max_ci"))
        max_ci_scores = [r["score"] for r in by_max_ci["results"]]  # type: ignore[union-attr]
        max_ci_shares.append(len(set(max_ci_scores)) / len(max_ci_scores))
    assert np.mean(np.array(shares) >= 0.8) >= 0.9, shares
    assert np.median(shares) >= 0.95 and np.mean(shares) > np.mean(max_ci_shares)


def test_exclusion_against_the_oracle(client: httpx.Client, corpus: Corpus) -> None:
    rng = np.random.default_rng(1)
    keys = corpus.frequent(0.25)
    checked = 0
    for trial in range(12):
        included = [str(k) for k in rng.choice(keys, size=1 + trial % 2, replace=False)]
        others = [k for k in keys if k not in included]
        excluded = tuple(str(k) for k in rng.choice(others, size=1 + trial % 3, replace=False))
        mode = ("all", "any")[trial // 2 % 2]
        min_ci = (0.0, 0.5)[trial // 4 % 2]
        rank = ("specificity", "max_ci")[trial % 2]
        body = search_all(
            client,
            components=",".join(included),
            exclude=",".join(excluded),
            mode=mode,
            min_ci=min_ci,
            rank=rank,
        )
        expected = oracle_search(
            corpus, included, mode=mode, exclude=excluded, min_ci=min_ci, rank=rank
        )
        assert_results_match(body, expected)
        without = oracle_search(corpus, included, mode=mode, min_ci=min_ci, rank=rank)
        checked += len(without) - len(expected)
    assert checked > 0, "the exclusions left out some prompts"


def oracle_cofiring(
    corpus: Corpus, key: str, *, min_count: int, order: str
) -> list[dict[str, object]]:
    mine = corpus.prompts(key)
    partners = []
    for other, where in corpus.fires.items():
        count = len(mine & set(where))
        if other == key or count < min_count:
            continue
        n_b = len(where)
        lift = Fraction(count * corpus.n_prompts, len(mine) * n_b)
        jaccard = Fraction(count, len(mine) + n_b - count)
        partners.append((other, count, n_b, lift, jaccard))
    position = {"lift": 3, "jaccard": 4, "count": 1}[order]
    partners.sort(key=lambda p: (-p[position], -p[1], corpus.component_ids[p[0]]))
    return [
        {"key": k, "count": c, "prompt_count": n, "lift": float(lift), "jaccard": float(jac)}
        for k, c, n, lift, jac in partners
    ]


@pytest.mark.parametrize(
    ("share", "min_count", "order"),
    [
        (1.0, 1, "lift"),  # fires everywhere: counted from the prompts without it
        (0.7, 3, "lift"),  # more than half: the same
        (0.4, 1, "jaccard"),
        (0.1, 2, "count"),
        (0.02, 1, "lift"),
    ],
)
def test_cofiring_against_the_oracle(
    client: httpx.Client, corpus: Corpus, share: float, min_count: int, order: str
) -> None:
    counts = {k: len(f) for k, f in corpus.fires.items()}
    key = min(counts, key=lambda k: (abs(counts[k] - share * corpus.n_prompts), k))
    response = client.get(
        f"/api/components/{key}/cofiring",
        params={"limit": 1000, "min_count": min_count, "order": order},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = oracle_cofiring(corpus, key, min_count=min_count, order=order)
    assert (body["prompt_count"], body["n_prompts"]) == (counts[key], corpus.n_prompts)
    assert body["n_partners"] == len(expected) > 0
    assert [i["key"] for i in body["items"]] == [e["key"] for e in expected]
    for item, oracle in zip(body["items"], expected, strict=True):
        assert (item["count"], item["prompt_count"]) == (oracle["count"], oracle["prompt_count"])
        assert item["lift"] == pytest.approx(oracle["lift"], rel=1e-12)
        assert item["jaccard"] == pytest.approx(oracle["jaccard"], rel=1e-12)
    top = client.get(
        f"/api/components/{key}/cofiring",
        params={"limit": 5, "min_count": min_count, "order": order},
    ).json()
    assert top["items"] == body["items"][:5] and top["n_partners"] == body["n_partners"]
