"""Ship the daily ECS files into Elasticsearch, exactly once, without slowing inference.

The local files are the source of truth. A small registry (like Filebeat's) remembers
how many bytes of each file have been acknowledged; documents go with `op_type=create`
and `_id = event.id`, so a repeat after a crash or a timeout answers 409 for what is
already there instead of duplicating it. Only complete lines are read: a line still
being written waits for the next pass.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telemetry.assets import LOGS_TEMPLATE_FILE, json_asset
from telemetry.daily import dated_files
from telemetry.names import LOGS_INDEX_PREFIX, LOGS_TEMPLATE, RECORDS_PREFIX, RECORDS_REGISTRY
from telemetry.offsets import Registry, complete_lines

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

CHUNK_DOCS = 500

log = logging.getLogger("wwts.shipping")


class ShipError(Exception):
    """Elasticsearch could not take the records now; they stay on disk for later."""


@dataclass
class ShipReport:
    sent: int = 0  # documents created now
    already: int = 0  # documents Elasticsearch already had (409): a repeat, not a loss
    skipped: int = 0  # lines that are not JSON (never shippable)
    files: int = 0

    def add(self, other: ShipReport) -> None:
        self.sent += other.sent
        self.already += other.already
        self.skipped += other.skipped
        self.files += other.files


def index_for(document: dict[str, Any]) -> str:
    """Daily index by the record's UTC day: wwts-logs-YYYY.MM.DD."""
    stamp = str(document.get("@timestamp", ""))
    try:
        day = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(dt.UTC).date()
    except ValueError:
        day = dt.datetime.now(dt.UTC).date()
    return f"{LOGS_INDEX_PREFIX}{day:%Y.%m.%d}"


def ensure_template(client: Elasticsearch, lifecycle_policy: str | None = None) -> None:
    """Install the index template (idempotent) so a new daily index never gets dynamic mappings."""
    body = json_asset(LOGS_TEMPLATE_FILE)
    if lifecycle_policy:
        body.setdefault("template", {}).setdefault("settings", {}).setdefault("index", {})["lifecycle"] = {
            "name": lifecycle_policy
        }
    client.indices.put_index_template(name=LOGS_TEMPLATE, **body)


@dataclass
class _Chunk:
    actions: list[dict[str, Any]] = field(default_factory=list)
    end_offset: int = 0
    skipped: int = 0


def _chunks(file: Path, start: int) -> Iterator[_Chunk]:
    """Complete lines from `start`, CHUNK_DOCS documents at a time, with the byte offset
    just past each chunk's last line."""
    chunk = _Chunk(end_offset=start)
    for text, offset in complete_lines(file, start):
        chunk.end_offset = offset
        if not text:
            continue
        try:
            document = json.loads(text)
            event_id = document["event"]["id"]
        except (ValueError, KeyError, TypeError):
            chunk.skipped += 1
            continue
        chunk.actions.append({"create": {"_index": index_for(document), "_id": event_id}})
        chunk.actions.append(document)
        if len(chunk.actions) >= 2 * CHUNK_DOCS:
            yield chunk
            chunk = _Chunk(end_offset=offset)
    if chunk.actions or chunk.skipped or chunk.end_offset > start:
        yield chunk


def _send(client: Elasticsearch, chunk: _Chunk) -> ShipReport:
    report = ShipReport(skipped=chunk.skipped)
    if not chunk.actions:
        return report
    response = client.bulk(operations=chunk.actions, refresh=False)
    for item in response["items"]:
        outcome = item["create"]
        status = outcome.get("status", 0)
        if status in (200, 201):
            report.sent += 1
        elif status == 409:
            report.already += 1
        else:
            reason = outcome.get("error", {}).get("reason", f"status {status}")
            raise ShipError(f"Elasticsearch refused a record: {reason}")
    return report


def ship_directory(client: Elasticsearch, directory: Path, *, deadline: float | None = None) -> ShipReport:
    """Send every complete record not yet acknowledged. Raises ShipError (or the client's
    transport errors) when Elasticsearch cannot take them; what was acknowledged stays
    acknowledged."""
    registry = Registry(directory, RECORDS_REGISTRY)
    total = ShipReport()
    for file, prefix, _day in dated_files(directory):
        if prefix != RECORDS_PREFIX:
            continue
        total.files += 1
        for chunk in _chunks(file, registry.offset(file)):
            if deadline is not None and time.monotonic() > deadline:
                return total
            total.add(_send(client, chunk))
            registry.advance(file, chunk.end_offset)
    registry.forget_missing(directory)
    return total


class BackgroundShipper:
    """Ships while a run is going, on its own thread; never blocks the inference thread.

    Elasticsearch down or slow costs one warning and at most `final_budget_s` at the end;
    the records wait on disk for `wwts logs ship`.
    """

    def __init__(
        self,
        client_factory: Any,
        directory: Path,
        flush: Any,
        *,
        interval_s: float = 1.0,
        final_budget_s: float = 1.2,
        warn: Any = None,
    ) -> None:
        self._client_factory = client_factory
        self.directory = directory
        self._flush = flush
        self.interval_s = interval_s
        self.final_budget_s = final_budget_s
        self._warn = warn or (lambda message: log.warning(message))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wwts-shipper", daemon=True)
        self._client: Elasticsearch | None = None
        self._template_ready = False
        self.report = ShipReport()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def start(self) -> BackgroundShipper:
        self._thread.start()
        return self

    def _pass(self, deadline: float | None = None) -> bool:
        with self._lock:
            try:
                self._flush()
                if self._client is None:
                    self._client = self._client_factory()
                if not self._template_ready:
                    ensure_template(self._client)
                    self._template_ready = True
                self.report.add(ship_directory(self._client, self.directory, deadline=deadline))
                self.error = None
                return True
            except Exception as exc:  # down, refused, slow, 401/403: records wait on disk
                self.error = exc
                return False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._pass():
                return  # one failure is enough: stop trying until the final pass / `logs ship`

    def stop(self) -> None:
        """A last pass within `final_budget_s`; one warning if Elasticsearch did not take everything."""
        self._stop.set()
        deadline = time.monotonic() + self.final_budget_s
        self._thread.join(self.final_budget_s)
        if self._thread.is_alive():
            self.error = TimeoutError(f"no answer within {self.final_budget_s:g} s")
        elif self.error is None:
            final = threading.Thread(target=self._pass, args=(deadline,), name="wwts-shipper-final", daemon=True)
            final.start()
            final.join(max(0.1, deadline - time.monotonic()))
            if final.is_alive():
                self.error = TimeoutError(f"no answer within {self.final_budget_s:g} s")
        if self.error is not None:
            self._warn(
                f"Elasticsearch did not take the records ({describe_error(self.error)}); "
                f"they are kept in {self.directory} - run `wwts logs ship` later"
            )


def describe_error(error: BaseException) -> str:
    """A one-line reason without credentials (the client's messages carry no secrets, but
    URLs could: strip userinfo)."""
    name, detail = type(error).__name__, str(error)
    # the client's errors already start with their name: AuthenticationException(401, ...)
    text = (detail if detail.startswith(name) else f"{name}: {detail}").splitlines()[0]
    return _strip_userinfo(text)[:300]


def _strip_userinfo(text: str) -> str:
    import re

    return re.sub(r"(https?://)[^/@\s]+@", r"\1", text)
