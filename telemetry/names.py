"""Names that leave the process — span names, record datasets, file prefixes, index and
template names — each written once. The read side (`queries`), the CLI and the local
servers import them from here; the collector's YAML and docker-compose repeat a few of
them, and a test holds those copies to these."""

from __future__ import annotations

LOGGER_NAME = "wwts"
INSTRUMENTATION_SCOPE = "wwts"

# spans
CLASSIFY_SPAN = "wwts.classify"

# ECS records: event.dataset
STARTUP, INFERENCE, ALERT, LOG = "wwts.startup", "wwts.inference", "wwts.alert", "wwts.log"

# daily local files in the log directory: <prefix>-YYYY-MM-DD.jsonl
RECORDS_PREFIX, TRACES_PREFIX, METRICS_PREFIX = "wwts", "traces", "metrics"
RECORDS_REGISTRY = ".ship-registry.json"  # how far each records file reached Elasticsearch
TRACES_REGISTRY = ".trace-ship-registry.json"  # how far each traces file reached the collector

# Elasticsearch
LOGS_INDEX_PREFIX = "wwts-logs-"  # + YYYY.MM.DD (UTC)
LOGS_INDEX_PATTERN = LOGS_INDEX_PREFIX + "*"
LOGS_TEMPLATE = "wwts-logs"
LOGS_POLICY = "wwts-logs"
TRACES_INDEX = "wwts-traces"  # written by the collector (mapping mode none)
TRACES_INDEX_PATTERN = TRACES_INDEX + "*"
TRACES_TEMPLATE = "wwts-traces"
METRICS_INDEX = "wwts-metrics"
METRICS_INDEX_PATTERN = METRICS_INDEX + "*"
METRICS_TEMPLATE = "wwts-metrics"
