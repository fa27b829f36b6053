"""The runner's instrumentation: a `wwts.classify` span per image with four stage
spans, image attributes, resource snapshots, one ECS record per image, and alerts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, Status, StatusCode, Tracer

from pipeline.runner import Hooks, Result
from pipeline.stages import LoadedImage
from telemetry.resources import ResourceSampler, Snapshot

CLASSIFY_SPAN = "wwts.classify"


@dataclass(frozen=True)
class Thresholds:
    latency_ms: float = 1000.0
    gpu_temperature_c: float = 80.0


@dataclass
class Request:
    span: Span
    started_ns: int


class TelemetryHooks(Hooks):
    def __init__(
        self,
        tracer: Tracer,
        logger: logging.Logger,
        *,
        model_name: str,
        device: str | None = None,
        sampler: ResourceSampler | None = None,
        thresholds: Thresholds = Thresholds(),
    ) -> None:
        self.tracer = tracer
        self.logger = logger
        self.model_name = model_name
        self.device = device or "unknown"
        self.sampler = sampler
        self.thresholds = thresholds

    def set_device(self, device: str) -> None:
        self.device = device

    def _snapshot(self) -> Snapshot | None:
        return self.sampler.latest if self.sampler is not None else None

    def begin(self, path: str) -> Request:
        span = self.tracer.start_span(
            CLASSIFY_SPAN,
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # always a new trace
            attributes={"image.path": path, "wwts.model.name": self.model_name},
        )
        return Request(span, time.time_ns())

    def trace_id(self, request: Request) -> str | None:
        context = request.span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    def stage(self, request: Request, name: str) -> Any:
        return self._span(name, request.span, [request])

    def batch_stage(self, requests: Sequence[Request], name: str) -> Any:
        links = [Link(r.span.get_span_context(), {"wwts.batch.index": i}) for i, r in enumerate(requests)]
        return self._span(name, requests[0].span, requests, links, {"wwts.batch.size": len(requests)})

    @contextmanager
    def _span(
        self,
        name: str,
        parent: Span,
        requests: Sequence[Request],
        links: list[Link] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[None]:
        span = self.tracer.start_span(
            name, context=trace.set_span_in_context(parent), links=links, attributes=attributes
        )
        try:
            yield
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            for request in requests:
                request.span.set_status(Status(StatusCode.ERROR, f"{name} failed: {type(exc).__name__}"))
            raise
        finally:
            snapshot = self._snapshot()
            if snapshot is not None:
                span.set_attributes(snapshot.span_attributes)
            span.end()

    def loaded(self, request: Request, image: LoadedImage) -> None:
        request.span.set_attributes(
            {
                "image.md5": image.md5,
                "image.bytes": image.bytes,
                "image.width": image.width,
                "image.height": image.height,
                "image.mode": image.mode,
                "image.format": image.format,
            }
        )

    def finish(self, request: Request, result: Result) -> None:
        span = request.span
        span.set_attribute("wwts.device", self.device)  # known by now; not yet at `begin`
        if result.ok and result.predictions:
            top = result.predictions[0]
            span.set_attributes(
                {"wwts.top1.label": top.label, "wwts.top1.score": top.score, "wwts.top1.class_id": top.class_id}
            )
        elif result.error is not None:
            if span.is_recording() and not _has_error_status(span):
                span.record_exception(result.error)
                span.set_status(Status(StatusCode.ERROR, f"{type(result.error).__name__}: {result.error}"))
        snapshot = self._snapshot()
        self._record(request, result, snapshot)
        if result.ok:
            self._alerts(request, result, snapshot)
        span.end()

    def cancel(self, request: Request) -> None:
        """Loaded and preprocessed, then the run was stopped: the span ends, marked, and
        no inference record is written (the image has no result)."""
        request.span.set_attribute("wwts.cancelled", True)
        request.span.add_event("wwts.cancelled", {"reason": "the run was stopped before this image's forward pass"})
        request.span.end()

    # -- records -------------------------------------------------------------------

    def _record(self, request: Request, result: Result, snapshot: Snapshot | None) -> None:
        wwts: dict[str, Any] = {
            "model": {"name": self.model_name},
            "device": self.device,
            "latency_ms": result.latency_ms,
        }
        file: dict[str, Any] = {"path": result.path, "name": os.path.basename(result.path)}
        image = result.image
        if image is not None:
            file["size"] = image.bytes
            file["hash"] = {"md5": image.md5}
            wwts["image"] = {"width": image.width, "height": image.height, "mode": image.mode, "format": image.format}
        if snapshot is not None:
            wwts["resource"] = snapshot.record_fields
        event: dict[str, Any] = {"dataset": "wwts.inference", "kind": "event", "category": ["process"]}
        if result.ok:
            top = result.predictions[0]
            wwts["labels"] = [p.as_dict() for p in result.predictions]
            wwts["top1"] = {"label": top.label, "score": top.score, "class_id": top.class_id}
            event.update(outcome="success", duration=int(result.latency_ms.get("total", 0.0) * 1_000_000))
            self.logger.info(
                "%s: %s (%.4f)", result.path, top.label, top.score,
                extra={"event": event, "file": file, "wwts": wwts, "otel_span": request.span},
            )
        else:
            error = result.error or RuntimeError("unknown failure")
            event.update(outcome="failure", duration=time.time_ns() - request.started_ns)
            self.logger.error(
                "%s: %s: %s", result.path, type(error).__name__, error,
                exc_info=(type(error), error, error.__traceback__),
                extra={"event": event, "file": file, "wwts": wwts, "otel_span": request.span},
            )

    def _alerts(self, request: Request, result: Result, snapshot: Snapshot | None) -> None:
        total = result.latency_ms.get("total", 0.0)
        if total > self.thresholds.latency_ms:
            self._alert(request, result, "latency_ms", total, self.thresholds.latency_ms,
                        f"{result.path}: latency {total:.1f} ms over {self.thresholds.latency_ms:g} ms")
        temperature = snapshot.max_gpu_temperature if snapshot else None
        if temperature is not None and temperature > self.thresholds.gpu_temperature_c:
            self._alert(request, result, "gpu_temperature_c", temperature, self.thresholds.gpu_temperature_c,
                        f"GPU temperature {temperature:.0f} °C over {self.thresholds.gpu_temperature_c:g} °C")

    def _alert(self, request: Request, result: Result, metric: str, value: float, threshold: float, message: str) -> None:
        attributes = {"wwts.alert.metric": metric, "wwts.alert.value": value, "wwts.alert.threshold": threshold}
        request.span.add_event("wwts.alert", attributes)
        self.logger.warning(
            message,
            extra={
                "event": {"dataset": "wwts.alert", "kind": "alert"},
                "file": {"path": result.path},
                "wwts": {"alert": {"metric": metric, "value": value, "threshold": threshold}},
                "otel_span": request.span,
            },
        )


def _has_error_status(span: Span) -> bool:
    status = getattr(span, "status", None)
    return status is not None and status.status_code is StatusCode.ERROR
