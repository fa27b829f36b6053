"""Telemetry that wraps the pipeline from outside: spans, ECS records, resource snapshots.

Small swappable parts in the OpenTelemetry SDK's manner: a sampler, span hooks, a log
formatter and handlers, exporters. `telemetry.session.Telemetry` wires them together.
"""
