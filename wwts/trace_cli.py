"""`wwts trace show | slow | ship`: a slow request read as a waterfall in the terminal, and
the local trace files sent to the collector after a run made without one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wwts.cli_support import es_client, table_console
from wwts.errors import BackendError, WwtsError

app = typer.Typer(help="Read traces back from Elasticsearch; ship local trace files.", no_args_is_help=True)
BAR_WIDTH = 40
KEY_ATTRIBUTES = (
    "wwts.input", "file.path", "wwts.image.md5", "wwts.image.width", "wwts.image.height", "wwts.image.mode",
    "wwts.top1.label", "wwts.top1.score", "wwts.model.name", "wwts.runtime", "wwts.device", "wwts.batch.size",
    "error.type",
)


@app.command()
def show(trace_id: Annotated[str, typer.Argument(help="32 hex digits, e.g. from `classify --json` or a log record.")]) -> None:
    """The trace as a waterfall: span tree, offsets, durations, status, key attributes."""
    from queries import traces
    from telemetry.names import TRACES_INDEX

    client = es_client()
    try:
        spans = traces.spans_of(client, trace_id)
        records = traces.log_messages(client, trace_id)
    except Exception as exc:
        raise BackendError.of("reading the trace failed", exc) from None
    if not spans:
        raise WwtsError(f"no spans for trace {trace_id} in {TRACES_INDEX} (not exported yet, or too old?)")
    table_console().print(render_waterfall(traces.tree(spans), spans, records, trace_id))


def render_waterfall(roots: list[Any], spans: list[Any], records: list[dict[str, Any]], trace_id: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pipeline.text import printable
    from telemetry.names import CLASSIFY_SPAN
    from telemetry.resources import PREFIX as RESOURCE_PREFIX

    start = min(s.start for s in spans)
    end = max(s.start.timestamp() + s.duration_ms / 1000 for s in spans)
    total_ms = max((end - start.timestamp()) * 1000, 1e-6)
    table = Table(title=f"trace {trace_id} — {len(spans)} spans, {total_ms:.1f} ms", expand=False)
    table.add_column("span", no_wrap=True)
    table.add_column("offset ms", justify="right")
    table.add_column("duration ms", justify="right")
    table.add_column("waterfall", no_wrap=True)
    table.add_column("status")

    def add(span: Any, depth: int) -> None:
        offset = (span.start - start).total_seconds() * 1000
        left = int(round(offset / total_ms * BAR_WIDTH))
        width = max(1, int(round(span.duration_ms / total_ms * BAR_WIDTH)))
        bar = Text(" " * min(left, BAR_WIDTH - 1))
        bar.append("█" * min(width, BAR_WIDTH - min(left, BAR_WIDTH - 1)), style="red" if span.status == "ERROR" else "green")
        table.add_row("  " * depth + span.name, f"{offset:.1f}", f"{span.duration_ms:.1f}", bar, span.status)
        for child in span.children:
            add(child, depth + 1)

    for root in roots:
        add(root, 0)

    details = Table(show_header=False, title="key attributes")
    root = next((s for s in spans if s.name == CLASSIFY_SPAN), roots[0])
    for key in KEY_ATTRIBUTES:
        if key in root.attributes:
            details.add_row(key, printable(str(root.attributes[key])))
    stages = [s for s in spans if s.parent_id == root.span_id]  # not the HTTP spans around a served request
    if stages:
        slowest = max(stages, key=lambda s: s.duration_ms)
        details.add_row("slowest stage", f"{slowest.name} ({slowest.duration_ms:.1f} ms)")
        for key, value in sorted(slowest.attributes.items()):
            if key.startswith(RESOURCE_PREFIX):
                details.add_row(f"  {key}", str(value))
    for key, value in sorted(root.events.items()):
        details.add_row(f"event {key}", printable(str(value))[:120])
    parts: list[Any] = [table, details]
    if records:
        messages = Table(title="log records of this trace", show_header=True)
        messages.add_column("time")
        messages.add_column("level")
        messages.add_column("message")
        for doc in records:
            level = doc.get("log.level") or doc.get("log", {}).get("level", "")
            messages.add_row(str(doc.get("@timestamp", ""))[11:23], str(level), printable(str(doc.get("message", ""))))
        parts.append(messages)
    return Group(*parts)


@app.command()
def slow(
    min_ms: Annotated[float, typer.Option("--min-ms", min=0, help="Only traces at least this long.")] = 1000,
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 1h, 7d.")] = "1h",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 20,
) -> None:
    """The slowest recent classify traces, each with its slowest stage and image."""
    from rich.table import Table

    from pipeline.text import printable
    from queries import traces

    client = es_client()
    try:
        rows = traces.slow_traces(client, min_ms, since, limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except Exception as exc:
        raise BackendError.of("reading traces failed", exc) from None
    table = Table(title=f"{len(rows)} classify trace(s) ≥ {min_ms:g} ms in the last {since}, slowest first")
    for column in ("trace id", "total ms", "slowest stage", "stage ms", "image", "top-1", "status"):
        table.add_column(column, overflow="fold")
    for root, stage in rows:
        table.add_row(
            root.trace_id,
            f"{root.duration_ms:.1f}",
            stage.name if stage else "-",
            f"{stage.duration_ms:.1f}" if stage else "-",
            printable(str(root.attributes.get("wwts.input", "-"))),
            str(root.attributes.get("wwts.top1.label", "-")),
            root.status,
        )
    table_console().print(table)


@app.command()
def ship() -> None:
    """Send the local trace files (runs made without a collector) to the OTLP endpoint;
    safe to repeat: each span is sent once."""
    from telemetry.config import OtelConfig
    from telemetry.trace_shipping import ship_traces
    from wwts.cli_support import settings
    from wwts.errors import UsageError

    config = settings()
    traces = OtelConfig.from_env().traces
    if traces.endpoint is None:
        raise UsageError("no OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
    try:
        report = ship_traces(traces, config.log_dir)
    except Exception as exc:
        raise BackendError.of("shipping traces stopped, the rest stays on disk for the next try", exc) from None
    typer.echo(
        f"shipped {report.spans} span(s) in {report.requests} request(s) from {report.files} file(s) in "
        f"{config.log_dir} to {traces.endpoint} ({report.skipped} unreadable line(s) skipped)"
    )
