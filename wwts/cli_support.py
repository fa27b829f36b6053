"""What the command groups share: settings from the environment, the Elasticsearch
client, and the rich console for wide tables. Errors are raised as `WwtsError`s; the
app maps them to one stderr line and an exit code."""

from __future__ import annotations

from typing import Any

from telemetry.elastic import INTERACTIVE_TIMEOUT_S
from wwts.errors import UsageError
from wwts.settings import Settings

PIPED_WIDTH = 200


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def es_client(config: Settings | None = None) -> Any:
    """A client for WWTS_ES_URL with interactive timeouts; a usage error when it is not set."""
    from telemetry import elastic

    config = config or settings()
    if config.es is None:
        raise UsageError("WWTS_ES_URL is not set (where is Elasticsearch?)")
    return elastic.client(config.es, timeout=INTERACTIVE_TIMEOUT_S)


def table_console() -> Any:
    """A rich console for the wide tables: the terminal's width, or PIPED_WIDTH when piped
    (rich's 80-column default folds trace ids and paths into unreadable stacks)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)
