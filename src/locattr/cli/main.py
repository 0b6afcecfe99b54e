"""The `locattr` command: query, upgrade and merge databases from the terminal.

Argument parsing and printing only; the work is done by `locattr.storage`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from locattr.errors import LocattrError
from locattr.storage import LocalAttrDB, resolve_target
from locattr.storage.schema import upgrade

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
    revision = upgrade(resolve_target(db))
    console.print(f"{resolve_target(db).display} is at schema revision {revision}")


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
    limit: Annotated[int, typer.Option(help="Results per page (1-1000).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor from a previous page.")] = None,
) -> None:
    """Prompts where all (or any) of the components fire, ranked by summed max CI."""
    with _open(db) as database:
        page = database.find_prompts_with_components(
            keys,
            require_all=not any_,
            limit=limit,
            cursor=cursor,
            min_ci=min_ci,
            same_position=same_position,
        )
        previews = {info.id: info for info in database.get_prompts(page.prompt_ids)}
    for key in page.unknown_keys:
        console.print(f"unknown component {key}: no such layer or index here", style="yellow")
    mode = "any" if any_ else "all"
    table = Table(title=f"{page.total} prompts where {mode} of {len(keys)} components fire")
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
        console.print(f"unknown component {key}: no such layer or index in this database")
        raise typer.Exit(1)
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
    table = Table(title=f"most frequent components ({total} prompts)")
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
    """A prompt's tokens and its strongest edges."""
    with _open(db) as database:
        info = database.get_prompt(prompt_id)
        graph = database.get_graph(prompt_id) if info is not None else None
    if info is None:
        console.print(f"no prompt {prompt_id} in this database")
        raise typer.Exit(1)
    console.print(
        f"prompt {info.id} ({info.identity}): {len(info.tokens)} tokens, "
        f"{info.n_nodes} nodes, {info.n_edges} edges"
    )
    console.print(" ".join(f"[{i}]{token}" for i, token in enumerate(info.tokens)))
    if graph is None or graph.n_edges == 0:
        return
    table = Table(title=f"strongest {min(edges, graph.n_edges)} edges")
    for column in ("source", "target", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    arrays = graph.edge_arrays()
    order = abs(graph.edge_value).argsort()[::-1][:edges]
    for j in order.tolist():
        table.add_row(
            f"{arrays['source_layer'][j]}:{arrays['source_pos'][j]}:{arrays['source_component'][j]}",
            f"{arrays['target_layer'][j]}:{arrays['target_pos'][j]}:{arrays['target_component'][j]}",
            f"{graph.edge_value[j]:+.5f}",
        )
    console.print(table)


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
            console.print(f"{source}: {added} prompts added")
        into.build_postings()
        console.print(f"{into.target.display}: {into.get_prompt_count()} prompts")


@app.command("serve")
def serve(
    db: DbOption,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind (all: 0.0.0.0).")] = "127.0.0.1",
    cors: Annotated[
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable).")
    ] = None,
) -> None:
    """Serve a database over HTTP: the API under /api, docs at /docs, the frontend at /."""
    _serve(db, host=host, port=port, cors=cors or [])


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
        console.print(f"{db}: {result.added} prompts added")
    _serve(db, host=host, port=port, cors=[])


def _demo_without_inputs(db: str) -> bool:
    """A demo database file built before graphs held `wte` and `output` nodes: the demo is
    rebuilt rather than refused, since nothing in it is the user's own."""
    if not Path(db).is_file():
        return False
    with LocalAttrDB(db, readonly=True) as existing:
        meta = existing.get_meta()
    return meta.get("run") == "demo" and "inputs" not in meta


def _serve(db: str, *, host: str, port: int, cors: list[str]) -> None:
    import uvicorn

    from locattr.api import create_app
    from locattr.api.settings import H11_MAX_REQUEST_BYTES, Settings

    LocalAttrDB(db, readonly=True).close()  # refuse to start on a bad database, clearly
    application = create_app(Settings(db=db, cors_origins=cors))
    console.print(f"serving {resolve_target(db).display} on http://{host}:{port}")
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        h11_max_incomplete_event_size=H11_MAX_REQUEST_BYTES,
    )


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()
    except LocattrError as error:
        print(f"locattr: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
