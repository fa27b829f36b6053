"""What the command groups share: settings from the environment, the Elasticsearch client,
and the one-line errors with their exit codes (2 usage, 1 a backend failed)."""

from __future__ import annotations

from typing import Any

import typer

from wwts.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # the contract's exit codes


def fail_usage(message: str) -> typer.Exit:
    typer.echo(f"wwts: error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def backend_failure(what: str, error: BaseException) -> typer.Exit:
    """One line naming what failed and why, without credentials."""
    from telemetry.shipping import describe_error

    typer.echo(f"wwts: error: {what}: {describe_error(error)}", err=True)
    return typer.Exit(EXIT_FAILED)


def settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise fail_usage(str(exc)) from None


def es_client_or_exit(settings: Settings | None = None) -> Any:
    """A client for WWTS_ES_URL with interactive timeouts; exit 2 when it is not set."""
    from telemetry import elastic

    settings = settings or settings_or_exit()
    if not settings.es_url:
        raise fail_usage("WWTS_ES_URL is not set (where is Elasticsearch?)")
    return elastic.client(settings, timeout=10.0)


PIPED_WIDTH = 200


def table_console() -> Any:
    """A rich console for the wide tables: the terminal's width, or PIPED_WIDTH when piped
    (rich's 80-column default folds trace ids and paths into unreadable stacks)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)
