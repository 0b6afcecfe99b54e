"""The `locattr` command: query, upgrade and merge databases from the terminal.

Argument parsing and printing only; the work is done by `locattr.storage`.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from locattr.cli.words import plural
from locattr.errors import LocattrError
from locattr.graph import OUTPUT_LAYER
from locattr.storage import LocalAttrDB, resolve_target
from locattr.storage.aggregate import AggregateReport
from locattr.storage.corpus import DIRECTIONS
from locattr.storage.edge_rows import EDGE_INDEX_MIN_ABS
from locattr.storage.engine import create_sync_engine
from locattr.storage.queries import RANKS
from locattr.storage.reads import COFIRING_ORDERS, DEFAULT_MIN_COUNT
from locattr.storage.records import preview_of
from locattr.storage.schema import current_revision, upgrade
from locattr.storage.writes import CORPUS_TABLES_STALE_KEY

app = typer.Typer(
    name="locattr",
    help="Local attribution graphs of SPD-decomposed language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
query_app = typer.Typer(
    help="Search and inspect a database from the terminal.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(query_app, name="query")

T = TypeVar("T", bound=str)
console = Console(markup=False)  # token strings and layer names may contain [brackets]

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="LOCATTR_DB",
        show_envvar=True,
        help="SQLite file path or SQLAlchemy URL (postgresql://...).",
    ),
]


def _open(db: str) -> LocalAttrDB:
    return LocalAttrDB(db, readonly=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption) -> None:
    """Bring a database to this locattr's schema revision (creating it when empty)."""
    target = resolve_target(db)
    engine = create_sync_engine(target)
    try:
        before = current_revision(engine, target)
    finally:
        engine.dispose()
    revision = upgrade(target)
    console.print(f"{target.display} is at schema revision {revision}")
    if before is not None and before != revision:
        # Migrations may drop the packed postings (a cache): searches would read the index.
        with LocalAttrDB(db) as database:
            through = database.build_postings()
        console.print(f"{target.display}: search index packed through prompt {through}")
    with LocalAttrDB(db) as database:
        if CORPUS_TABLES_STALE_KEY not in database.get_meta():
            return
        # A database older than the corpus tables: fill them as `locattr db aggregate` does,
        # unless some prompts lost their graphs (--no-graphs), from which nothing can be built.
        without = sum(not info.has_graph for info in database.iter_prompts())
        if without:
            console.print(
                f"{target.display}: corpus attributions and edge index not built: "
                f"{plural(without, 'prompt was', 'prompts were')} stored without "
                "graphs (--no-graphs), so partner and edge queries stay unavailable",
                style="yellow",
            )
            return
        console.print(
            f"{target.display}: building the corpus attributions and edge index from the stored "
            "graphs (what `locattr db aggregate` does)"
        )
        report = _aggregate(database, edge_min_abs=None)
    console.print(_aggregate_summary(target.display, report))


@db_app.command("aggregate")
def db_aggregate(
    db: DbOption,
    edge_min_abs: Annotated[
        float | None,
        typer.Option(
            help="The edge index's floor: index a component pair in a prompt when its strongest "
            f"edge there has |value| at least this (default: the database's, "
            f"{EDGE_INDEX_MIN_ABS:g} unless changed)."
        ),
    ] = None,
) -> None:
    """Rebuild the corpus attributions (every component pair's edge values summed over the
    stored graphs) and the edge index from the stored graphs: for a database built before
    them, or to change the edge index's floor."""
    with LocalAttrDB(db) as database:
        report = _aggregate(database, edge_min_abs=edge_min_abs)
    console.print(_aggregate_summary(resolve_target(db).display, report))


def _aggregate(database: LocalAttrDB, *, edge_min_abs: float | None) -> AggregateReport:
    """`database.aggregate` with a progress display (prompts read, of all)."""
    from locattr.cli.progress import progress_display
    from locattr.generate import Progress

    state = Progress(total=0, done=0)
    with progress_display("locattr db aggregate") as show:

        def step(done: int, total: int) -> None:
            state.total, state.done, state.added = total, done, done
            show(state)

        return database.aggregate(edge_min_abs=edge_min_abs, progress=step)


def _aggregate_summary(display: str, report: AggregateReport) -> str:
    return (
        f"{display}: corpus attributions of {plural(report.pairs, 'component pair')} from "
        f"{plural(report.prompts, 'prompt')}; edge index of "
        f"{plural(report.indexed_edges, 'edge')} with |value| >= {report.edge_min_abs:g}"
    )


@db_app.command("optimize")
def db_optimize(db: DbOption) -> None:
    """Pack the inverted index per component so searches are fast (locattr-generate does this)."""
    with LocalAttrDB(db) as database:
        through = database.build_postings()
    console.print(f"{resolve_target(db).display}: search index packed through prompt {through}")


@query_app.command("search")
def query_search(
    keys: Annotated[list[str], typer.Argument(help="Component keys 'layer:index'.")],
    db: DbOption,
    any_: Annotated[
        bool, typer.Option("--any", help="Prompts with any key (default: all).")
    ] = False,
    min_ci: Annotated[
        float, typer.Option(help="Count a component only where its max CI reaches this.")
    ] = 0.0,
    same_position: Annotated[
        bool, typer.Option(help="All components at one common position.")
    ] = False,
    not_: Annotated[
        list[str] | None,
        typer.Option("--not", help="Leave out prompts where this component fires (repeatable)."),
    ] = None,
    rank: Annotated[
        str,
        typer.Option(
            help=f"{' or '.join(RANKS)}: sum of CI mass x ln(1 + N / n) over the components, "
            "or sum of their max CI (see README)."
        ),
    ] = "specificity",
    limit: Annotated[int, typer.Option(help="Results per page (1-1000).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor from a previous page.")] = None,
) -> None:
    """Prompts where all (or any) of the components fire and none of the --not ones, ranked."""
    with _open(db) as database:
        page = database.find_prompts_with_components(
            keys,
            require_all=not any_,
            limit=limit,
            cursor=cursor,
            min_ci=min_ci,
            same_position=same_position,
            exclude=not_ or [],
            rank=_choice(rank, RANKS, "--rank"),
        )
        previews = {info.id: info for info in database.get_prompts(page.prompt_ids)}
    for key in page.unknown_keys:
        console.print(f"unknown component {key}: no such layer or index here", style="yellow")
    mode = "any" if any_ else "all"
    without = f", none of {len(set(not_ or []))}" if not_ else ""
    table = Table(
        title=f"{plural(page.total, 'prompt')} where {mode} of {plural(len(keys), 'component')} "
        f"{'fires' if len(keys) == 1 else 'fire'}{without} (ranked by {page.rank})"
    )
    for column in ("prompt", "score", "matches (max CI @ positions)", "text"):
        table.add_column(column, overflow="fold")
    for hit in page.hits:
        info = previews.get(hit.prompt_id)
        matches = "\n".join(
            f"{key} {m.max_ci:.3f} @ {m.positions}" for key, m in hit.matches.items()
        )
        table.add_row(
            str(hit.prompt_id), f"{hit.score:.3f}", matches, info.preview(60) if info else ""
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@query_app.command("cofiring")
def query_cofiring(
    key: Annotated[str, typer.Argument(help="Component key 'layer:index'.")],
    db: DbOption,
    limit: Annotated[int, typer.Option(help="How many partners (1-1000).")] = 20,
    min_count: Annotated[
        int, typer.Option(help="Only partners in at least this many of the same prompts.")
    ] = DEFAULT_MIN_COUNT,
    order: Annotated[
        str, typer.Option(help=f"{', '.join(COFIRING_ORDERS)}: best first by this.")
    ] = "lift",
) -> None:
    """The components that fire in the same prompts as KEY, over every prompt, by association:
    lift = count x N / (n_A x n_B), jaccard = count / (n_A + n_B - count)."""
    with _open(db) as database:
        found = database.get_cofiring(
            key,
            limit=limit,
            min_count=min_count,
            order=_choice(order, COFIRING_ORDERS, "--order"),
        )
    if found is None:
        raise _unknown_component(key)
    table = Table(
        title=f"{found.n_partners} components fire with {found.key} in {min_count}+ prompts "
        f"({found.key} fires in {found.prompt_count} of {found.n_prompts}; by {order})"
    )
    for column in ("component", "together", "its prompts", "lift", "jaccard"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for partner in found.partners:
        table.add_row(
            partner.key,
            str(partner.count),
            str(partner.prompt_count),
            f"{partner.lift:.3f}",
            f"{partner.jaccard:.3f}",
        )
    console.print(table)


@query_app.command("partners")
def query_partners(
    key: Annotated[str, typer.Argument(help="Component key 'layer:index'.")],
    db: DbOption,
    direction: Annotated[
        str,
        typer.Option(
            help="upstream: the components sending attribution to KEY; downstream: those "
            "receiving it."
        ),
    ] = "upstream",
    limit: Annotated[int, typer.Option(help="How many partners (1-1000).")] = 20,
) -> None:
    """The components KEY exchanges attribution with across the corpus: per partner, the sum
    over every stored graph of the values of the edges between the two (total), of their
    |value| (total |value|), and the prompts with such an edge; largest total |value| first."""
    with _open(db) as database:
        found = database.get_partners(
            key, direction=_choice(direction, DIRECTIONS, "--direction"), limit=limit
        )
    verb = "send attribution to" if found.direction == "upstream" else "receive attribution from"
    table = Table(
        title=f"{plural(found.n_partners, 'component')} {verb} {found.key} over "
        f"{plural(found.n_prompts, 'prompt')} (largest total |value| first)"
    )
    for column in ("component", "total", "total |value|", "prompts"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for partner in found.partners:
        table.add_row(
            partner.key,
            f"{partner.total:+.4f}",
            f"{partner.total_abs:.4f}",
            str(partner.prompt_count),
        )
    console.print(table)


@query_app.command("edges")
def query_edges(
    source: Annotated[str, typer.Argument(help="Source component key 'layer:index'.")],
    target: Annotated[str, typer.Argument(help="Target component key, of a later layer.")],
    db: DbOption,
    min_abs: Annotated[
        float | None,
        typer.Option(
            help="Only prompts where the strongest edge reaches this |value| (default and "
            "lowest: the edge index's floor)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Results per page (1-1000).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor from a previous page.")] = None,
) -> None:
    """Prompts where an edge runs from SOURCE to TARGET (at any positions) with |value| at least
    --min-abs, strongest first: each with that edge's |value|, signed value and positions."""
    with _open(db) as database:
        page = database.find_prompts_with_edge(
            source, target, min_abs=min_abs, limit=limit, cursor=cursor
        )
    table = Table(
        title=f"{plural(page.total, 'prompt')} where {page.source} -> {page.target} has "
        f"|value| >= {page.min_abs:g}"
    )
    for column in ("prompt", "max |value| (value)", "positions", "text"):
        table.add_column(column, overflow="fold")
    for hit in page.hits:
        table.add_row(
            str(hit.prompt_id),
            f"{hit.max_abs:.4f} ({hit.value:+.4f})",
            f"{hit.source_position}→{hit.target_position}",
            preview_of(hit.tokens, 60),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


def _choice(value: str, choices: tuple[T, ...], option: str) -> T:
    """`value` as one of `choices`, or a usage error naming the option."""
    for choice in choices:
        if value == choice:
            return choice
    raise typer.BadParameter(
        f"{value!r} is not one of {', '.join(map(str, choices))}", param_hint=option
    )


def _unknown_component(key: str) -> LocattrError:
    """A well-formed key this database does not have: reported like a malformed one (exit 2)."""
    return LocattrError(
        f"unknown component {key}: no such layer or index in this database "
        "(see `locattr query components`)"
    )


@query_app.command("stats")
def query_stats(
    key: Annotated[str, typer.Argument(help="Component key 'layer:index'.")],
    db: DbOption,
    top: Annotated[int, typer.Option(help="How many top prompts to list.")] = 10,
) -> None:
    """How often a component fires, how strongly, and where most."""
    with _open(db) as database:
        stats = database.get_component_stats(key, top_k=top)
    if stats is None:
        raise _unknown_component(key)
    table = Table(title=f"component {stats.key}", show_header=False)
    table.add_row("prompts where it fires", str(stats.prompt_count))
    table.add_row("mean of max CI", f"{stats.mean_max_ci:.4f}")
    table.add_row("max of max CI", f"{stats.max_max_ci:.4f}")
    table.add_row("dataset mean CI", "-" if stats.mean_ci is None else f"{stats.mean_ci:.4f}")
    table.add_row("top prompts", ", ".join(map(str, stats.top_prompt_ids)) or "-")
    console.print(table)


@query_app.command("components")
def query_components(
    db: DbOption,
    layer: Annotated[str | None, typer.Option(help="Only this layer.")] = None,
    limit: Annotated[int, typer.Option(help="How many (1-1000).")] = 30,
) -> None:
    """The components that fire in the most prompts."""
    with _open(db) as database:
        rows = database.list_components(layer=layer, limit=limit)
        total = database.get_prompt_count()
    table = Table(title=f"most frequent components ({plural(total, 'prompt')})")
    for column in ("component", "prompts", "share", "mean max CI", "max CI"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for row in rows:
        share = row.prompt_count / total if total else 0.0
        table.add_row(
            row.key,
            str(row.prompt_count),
            f"{share:.1%}",
            f"{row.mean_max_ci:.3f}",
            f"{row.max_max_ci:.3f}",
        )
    console.print(table)


@query_app.command("prompt")
def query_prompt(
    prompt_id: Annotated[int, typer.Argument(help="Prompt id.")],
    db: DbOption,
    edges: Annotated[int, typer.Option(help="How many of the strongest edges to list.")] = 10,
) -> None:
    """A prompt's tokens and its strongest edges, each end as `layer:component @position token`."""
    with _open(db) as database:
        info = database.get_prompt(prompt_id)
        graph = database.get_graph(prompt_id) if info is not None else None
        vocabulary = database.get_vocabulary() if info is not None else None
    if info is None:
        raise LocattrError(f"no prompt {prompt_id} in this database")
    console.print(
        f"prompt {info.id} ({info.identity}): {plural(len(info.tokens), 'token')}, "
        f"{plural(info.n_nodes, 'node')}, {plural(info.n_edges, 'edge')}"
    )
    console.print(f"text: {''.join(info.tokens)!r}")
    console.print(" ".join(f"[{i}]{token}" for i, token in enumerate(info.tokens)))
    if graph is None or graph.n_edges == 0:
        return
    shown = min(edges, graph.n_edges)
    table = Table(title="the strongest edge" if shown == 1 else f"the {shown} strongest edges")
    for column in ("source", "target", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    arrays = graph.edge_arrays()
    order = abs(graph.edge_value).argsort()[::-1][:edges]
    for j in order.tolist():
        ends = [
            _node_label(
                str(arrays[f"{end}_layer"][j]),
                int(arrays[f"{end}_pos"][j]),
                int(arrays[f"{end}_component"][j]),
                info.tokens,
                vocabulary,
            )
            for end in ("source", "target")
        ]
        table.add_row(*ends, f"{graph.edge_value[j]:+.5f}")
    console.print(table)


def _node_label(
    layer: str, pos: int, component: int, tokens: list[str], vocabulary: list[str] | None
) -> str:
    """`h.0.mlp.c_fc:12 @5 ' cat'`: the component key, the position and the token there; an
    output node shows the token it predicts (its component is that token's id)."""
    if layer == OUTPUT_LAYER:
        predicted = vocabulary[component] if vocabulary and component < len(vocabulary) else None
        return f"{layer}:{component} @{pos}" + (f" -> {predicted!r}" if predicted else "")
    return f"{layer}:{component} @{pos} {tokens[pos]!r}"


@app.command("merge")
def merge(
    output: Annotated[str, typer.Argument(help="Database to merge into (created if missing).")],
    inputs: Annotated[list[str], typer.Argument(help="Shard databases to copy from.")],
) -> None:
    """Merge shard databases into one (prompts already present are skipped)."""
    with LocalAttrDB(output) as into:
        for source in inputs:
            with LocalAttrDB(source, readonly=True) as other:
                added = into.merge_from(other)
            console.print(f"{source}: {plural(added, 'prompt')} added")
        into.build_postings()
        console.print(f"{into.target.display}: {plural(into.get_prompt_count(), 'prompt')}")


@app.command("serve")
def serve(
    db: DbOption,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind (all: 0.0.0.0).")] = "127.0.0.1",
    cors: Annotated[
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            envvar="LOCATTR_MODEL",
            show_envvar=True,
            help="Hold this SPD run (`demo`, a run directory, a model_<step>.pth file or "
            "wandb:...) to compute graphs of new prompts and interventions.",
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            envvar="LOCATTR_DEVICE", show_envvar=True, help="Device for --model (cpu, cuda:1)."
        ),
    ] = "cpu",
) -> None:
    """Serve a database over HTTP: the API under /api, docs at /docs, the frontend at /."""
    _serve(db, host=host, port=port, cors=cors or [], model=model, device=device)


@app.command("demo")
def demo(
    db: Annotated[str, typer.Option(help="Where the demo database lives.")] = "data/demo.db",
    n_prompts: Annotated[int, typer.Option(help="Prompts to build when it is missing.")] = 200,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Build the demo database from the shipped demo run (when missing), then serve it."""
    from locattr.cli.progress import progress_display
    from locattr.generate import GenerateOptions, generate

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    if _demo_without_inputs(db):
        console.print(f"{db} predates input and output nodes in graphs: rebuilding it")
        for suffix in ("", "-wal", "-shm"):
            Path(db + suffix).unlink(missing_ok=True)
    options = GenerateOptions(model="demo", output=db, n_prompts=n_prompts, n_ctx=32, batch_size=8)
    with progress_display("building the demo database") as show:
        result = generate(options, show)
    if result.added:
        console.print(f"{db}: {plural(result.added, 'prompt')} added")
    _serve(db, host=host, port=port, cors=[], model="demo", device="cpu")


def _demo_without_inputs(db: str) -> bool:
    """A demo database file built before graphs held `wte` and `output` nodes: the demo is
    rebuilt rather than refused, since nothing in it is the user's own."""
    if not Path(db).is_file():
        return False
    with LocalAttrDB(db, readonly=True) as existing:
        meta = existing.get_meta()
    return meta.get("run") == "demo" and "inputs" not in meta


def _serve(
    db: str, *, host: str, port: int, cors: list[str], model: str | None, device: str
) -> None:
    import uvicorn

    from locattr.api import create_app
    from locattr.api.model import load_host
    from locattr.api.settings import H11_MAX_REQUEST_BYTES, Settings

    with LocalAttrDB(db, readonly=True) as checked:  # refuse to start on a bad database, clearly
        meta = checked.get_meta()
    settings = Settings(db=db, cors_origins=cors, model=model or "", device=device)
    held = None
    if model:  # loaded before the server starts, so a bad run fails here in one line
        console.print(f"loading model {model} on {device}")
        held = load_host(settings)
        held.runtime.check_database(meta, resolve_target(db).display)
    application = create_app(settings, model=held)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level="warning",
        h11_max_incomplete_event_size=H11_MAX_REQUEST_BYTES,
    )
    listening = _bound_socket(host, port)  # before the "serving" line, which must be true
    console.print(f"serving {resolve_target(db).display} on http://{host}:{port}")
    uvicorn.Server(config).run(sockets=[listening])


def _bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) as uvicorn binds one, or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    # TCP, and without it every small response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise LocattrError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (another server may be "
            "using the port: stop it or pass --port)"
        ) from None
    return sock


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()
    except LocattrError as error:
        print(f"locattr: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
