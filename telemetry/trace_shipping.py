"""Ship the local OTLP-JSON trace files to the configured OTLP endpoint, once per line.

A run made with no collector (or with the collector down) leaves its spans in
`traces-YYYY-MM-DD.jsonl`; `wwts trace ship` sends them later, so such a run can still
be opened with `wwts trace show`. Each line is one `ExportTraceServiceRequest`: over
OTLP/HTTP it is posted as it is (`application/json`); over gRPC it is parsed into the
protobuf message first. A persisted offset per file (as for records) means a repeat
sends nothing twice; a collector that is down leaves the offsets where they were.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry.config import SignalConfig
from telemetry.daily import dated_files
from telemetry.names import TRACES_PREFIX, TRACES_REGISTRY
from telemetry.offsets import Registry, complete_lines

TIMEOUT_S = 5.0
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


class TraceShipError(Exception):
    """The endpoint did not take the spans; they stay on disk for the next try."""


@dataclass
class TraceShipReport:
    requests: int = 0  # export requests (lines) sent now
    spans: int = 0
    skipped: int = 0  # lines that are not OTLP/JSON
    files: int = 0


def ship_traces(config: SignalConfig, directory: Path) -> TraceShipReport:
    """Send every complete line not yet acknowledged, in order; raises TraceShipError at
    the first refusal (what was acknowledged stays acknowledged)."""
    if config.endpoint is None:
        raise TraceShipError("no OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT)")
    headers = dict(config.headers)
    send = _HttpSender(config, headers) if config.http else _GrpcSender(config, headers)
    registry = Registry(directory, TRACES_REGISTRY)
    report = TraceShipReport()
    try:
        for file, prefix, _day in dated_files(directory):
            if prefix != TRACES_PREFIX:
                continue
            report.files += 1
            for line, offset in complete_lines(file, registry.offset(file)):
                document = _parse(line)
                if document is None:
                    report.skipped += int(bool(line))
                else:
                    send(line, document)
                    report.requests += 1
                    report.spans += _count_spans(document)
                registry.advance(file, offset)
        registry.forget_missing(directory)
    finally:
        send.close()
    return report


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) and "resourceSpans" in document else None


def _count_spans(document: dict[str, Any]) -> int:
    return sum(len(s.get("spans", [])) for r in document.get("resourceSpans", []) for s in r.get("scopeSpans", []))


class _HttpSender:
    def __init__(self, config: SignalConfig, headers: dict[str, str]) -> None:
        import urllib3

        self.url = config.http_url("v1/traces")
        self.headers = {**headers, "Content-Type": "application/json"}
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=TIMEOUT_S))

    def __call__(self, line: bytes, document: dict[str, Any]) -> None:
        try:
            response = self.pool.request("POST", self.url, body=line, headers=self.headers)
        except Exception as exc:
            raise TraceShipError(f"{self.url} did not answer: {type(exc).__name__}") from exc
        if response.status >= 300:
            raise TraceShipError(f"{self.url} answered HTTP {response.status}: {response.data[:200]!r}")

    def close(self) -> None:
        self.pool.clear()


class _GrpcSender:
    def __init__(self, config: SignalConfig, headers: dict[str, str]) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        assert config.endpoint is not None
        target = config.endpoint.split("://", 1)[-1].rstrip("/")
        secure = config.endpoint.startswith("https://")
        self.endpoint = config.endpoint
        self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
        self.stub = TraceServiceStub(self.channel)
        self.metadata = [(key.lower(), value) for key, value in headers.items()]

    def __call__(self, line: bytes, document: dict[str, Any]) -> None:
        from google.protobuf.json_format import ParseDict
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        message = ParseDict(_base64_ids(document), ExportTraceServiceRequest())
        try:
            self.stub.Export(message, timeout=TIMEOUT_S, metadata=self.metadata)
        except Exception as exc:
            code = getattr(exc, "code", lambda: None)()
            raise TraceShipError(f"{self.endpoint} did not take the spans ({code or type(exc).__name__})") from exc

    def close(self) -> None:
        self.channel.close()


def _base64_ids(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON writes ids in hex; protobuf's JSON mapping wants bytes in base64."""
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                _convert(span)
                for link in span.get("links", []):
                    _convert(link)
    return document


def _convert(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if obj.get(key):
            obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode("ascii")
