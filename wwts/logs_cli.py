"""`wwts logs search | ship | prune`: the log index from the terminal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer

from telemetry.daily import DEFAULT_KEEP_DAYS
from wwts.cli_support import es_client, settings, table_console
from wwts.errors import BackendError

app = typer.Typer(help="Search, ship and prune the ECS log records.", no_args_is_help=True)


@app.command()
def search(
    md5: Annotated[str | None, typer.Option("--md5", help="Image MD5 (file.hash.md5).")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Chinese label, top-1 or any of the top-k.")] = None,
    min_latency_ms: Annotated[float | None, typer.Option("--min-latency-ms", help="Total latency at least.")] = None,
    level: Annotated[str | None, typer.Option("--level", help="info, warning, error, …")] = None,
    trace_id: Annotated[str | None, typer.Option("--trace-id", help="All records of one trace.")] = None,
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 24h, 7d.")] = "24h",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One record (ECS JSON) per line.")] = False,
) -> None:
    """Find records the way an incident reviewer does in Kibana."""
    from queries import logs as log_search

    query = log_search.LogQuery(md5, label, min_latency_ms, level, trace_id, since, limit)
    try:
        log_search.build(query)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    client = es_client()
    try:
        documents = log_search.run(client, query)
    except Exception as exc:
        raise BackendError.of("search failed", exc) from None
    if as_json:
        for document in documents:
            typer.echo(json.dumps(document, ensure_ascii=False))
        return
    _print_table(documents)


def _print_table(documents: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from pipeline.text import printable

    table = Table(title=f"{len(documents)} record(s), newest first")
    for column in ("time (UTC)", "level", "dataset", "file", "top-1", "score", "total ms", "trace.id", "message"):
        table.add_column(column, overflow="fold")
    for doc in documents:
        wwts = doc.get("wwts", {})
        top = wwts.get("top1", {})
        total = wwts.get("latency_ms", {}).get("total")
        table.add_row(
            str(doc.get("@timestamp", ""))[:23].replace("T", " "),
            str(doc.get("log.level", doc.get("log", {}).get("level", ""))),
            str(doc.get("event", {}).get("dataset", "")),
            printable(str(doc.get("file", {}).get("name", ""))),
            str(top.get("label", "")),
            f"{top['score']:.4f}" if "score" in top else "",
            f"{total:.1f}" if isinstance(total, (int, float)) else "",
            str(doc.get("trace", {}).get("id", "")),
            printable(str(doc.get("message", "")))[:80],
        )
    table_console().print(table)


@app.command()
def ship() -> None:
    """Send every local record not yet in Elasticsearch (safe to repeat: no duplicates)."""
    from telemetry.shipping import ensure_template, ship_directory

    config = settings()
    client = es_client(config)
    try:
        ensure_template(client)
        report = ship_directory(client, config.log_dir)
    except Exception as exc:
        raise BackendError.of("shipping stopped, the rest stays on disk for the next try", exc) from None
    typer.echo(
        f"shipped {report.sent} new record(s) from {report.files} file(s) in {config.log_dir}"
        f" ({report.already} already there, {report.skipped} unreadable line(s) skipped)"
    )


@app.command()
def prune(
    keep_days: Annotated[
        int, typer.Option("--keep-days", min=1, help="Keep this many days, today included.")
    ] = DEFAULT_KEEP_DAYS,
) -> None:
    """Delete local daily files and Elasticsearch daily indices older than N days."""
    from telemetry.daily import prune as prune_files
    from telemetry.daily import utc_today
    from telemetry.names import LOGS_INDEX_PATTERN

    config = settings()
    removed = prune_files(config.log_dir, keep_days)
    typer.echo(f"removed {len(removed)} local file(s) older than {keep_days} day(s) from {config.log_dir}")
    for path in removed:
        typer.echo(f"  {path.name}")
    if config.es is None:
        return
    client = es_client(config)
    cutoff = utc_today() - dt.timedelta(days=keep_days - 1)
    try:
        names = list(client.indices.get(index=LOGS_INDEX_PATTERN, allow_no_indices=True, expand_wildcards="open,closed"))
        old = [name for name in names if (day := _index_day(name)) is not None and day < cutoff]
        for name in sorted(old):
            client.indices.delete(index=name)
    except Exception as exc:
        raise BackendError.of("pruning Elasticsearch failed", exc) from None
    typer.echo(f"deleted {len(old)} index(es) older than {keep_days} day(s): {', '.join(sorted(old)) or '-'}")


def _index_day(name: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(name.rsplit("-", 1)[-1], "%Y.%m.%d").date()
    except ValueError:
        return None
