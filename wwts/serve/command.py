"""`wwts serve`: telemetry, the pipeline and its batcher, the app, the server; then a
graceful stop that flushes spans and records.

Telemetry is the same session `classify` starts — spans over OTLP when an endpoint is
set (else the local trace file), records in the daily files and shipped to
Elasticsearch in the background — and its tracer provider is the one the FastAPI
instrumentation uses, so the SERVER span and `wwts.classify` share one trace and one
exporter. The model loads on the batch worker while the server already answers
`/healthz` (and `/readyz` with 503).
"""

from __future__ import annotations

import gc
import logging

from pipeline.driver import Pipeline, available_cores
from telemetry.config import prefer_stable_http_conventions
from telemetry.records import STARTUP_EVENT
from telemetry.session import Telemetry, TelemetryConfig
from wwts import __version__
from wwts.classify import SETUP_ERRORS, pipeline_config
from wwts.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from wwts.facts import runtime_facts, startup_line
from wwts.serve.app import create_app
from wwts.serve.config import CLASSIFY_PATH, CLOSE_TIMEOUT_S, ServeOptions
from wwts.serve.records import result_status
from wwts.serve.server import GracefulServer, bind
from wwts.serve.service import Service
from wwts.settings import Settings


def run_serve(options: ServeOptions, settings: Settings) -> int:
    prefer_stable_http_conventions()
    telemetry = Telemetry(
        TelemetryConfig(
            log_dir=options.log_dir, service_version=__version__, thresholds=settings.thresholds, es=settings.es,
            prometheus=True,
        )
    ).start()
    log = telemetry.logger
    service: Service | None = None
    pipeline: Pipeline | None = None
    try:
        workers = available_cores()
        try:
            config = pipeline_config(
                settings, model=options.model, model_dir=options.model_dir, runtime=options.runtime,
                device=options.device, batch_size=options.max_batch_size, top_k=options.top_k,
            )
            pipeline = Pipeline(config, telemetry.hooks(result_fields=result_status))
        except SETUP_ERRORS as exc:
            log.error("model %s: %s", options.model, exc, extra=STARTUP_EVENT)
            return EXIT_USAGE
        try:
            sock = bind(options.host, options.port)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", options.host, options.port, exc.strerror or exc, extra=STARTUP_EVENT)
            return EXIT_USAGE
        service = Service(pipeline, options, settings.api_token, workers)
        facts = runtime_facts(pipeline.plan, options.model)
        log.info(startup_line(facts), extra={**STARTUP_EVENT, "wwts": {"startup": facts}})
        host, port = sock.getsockname()[:2]
        log.info(
            "serving POST http://%s:%d%s (max batch %d, delay %g ms, queue %d, body %g MiB, token %s); loading the model",
            host, port, CLASSIFY_PATH, pipeline.batch_size, options.max_batch_delay_ms, options.max_queue,
            options.max_body_mb, "required" if settings.api_token else "not required", extra=STARTUP_EVENT,
        )
        handler = telemetry.file_handler
        telemetry.observe_queue_depth(lambda: service.batcher.depth)
        app = create_app(service, telemetry.provider, telemetry.meter_provider, telemetry.prometheus_text)
        server = GracefulServer(app, service, log, flush=handler.flush if handler else lambda: None)
        service.start()
        # As in `classify`: what is alive now (modules, the app) lives as long as the
        # server, and is left out of the collector's full passes.
        gc.freeze()
        server.run(sockets=[sock])
        return _outcome(server, service, log)
    finally:
        # a worker still loading the model holds the pipeline: the process exit ends both
        if pipeline is not None and (service is None or service.close(CLOSE_TIMEOUT_S)):
            pipeline.close()
        telemetry.shutdown()


def _outcome(server: GracefulServer, service: Service, log: logging.Logger) -> int:
    failed = service.batcher.failed
    if failed is not None:
        log.error("model %s: %s", service.pipeline.family.name, failed, extra=STARTUP_EVENT)
        return EXIT_USAGE if isinstance(failed, SETUP_ERRORS) else EXIT_FAILED
    if server.forced is not None:
        log.warning("stopped at once by a second signal (%d)", server.forced)
        return 128 + server.forced
    if service.in_flight:
        log.warning("stopped with %d request(s) still in flight after the drain time", service.in_flight)
    log.info("stopped (signal %s); %d request(s) served", service.stop_signal, service.served)
    return EXIT_OK
