"""The one OpenTelemetry `Resource` of a process, and the ECS fields derived from it.

Kibana joins log records to traces by service, so spans, metrics and records must name
the same one. The SDK's rules apply (`OTEL_SERVICE_NAME` over `service.name` in
`OTEL_RESOURCE_ATTRIBUTES`, both over our default `wwts`); the records' `service.*` and
`host.*` are then read off the resulting resource, never configured separately.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from opentelemetry.sdk.resources import (
    HOST_ARCH,
    HOST_NAME,
    OS_TYPE,
    PROCESS_PID,
    PROCESS_RUNTIME_NAME,
    PROCESS_RUNTIME_VERSION,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)

DEFAULT_SERVICE = "wwts"
# deployment.environment.name (semantic conventions 1.27+) and its older spelling
ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")


def build_resource(service_version: str) -> Resource:
    """Host and process facts and the service's version, under whatever the environment
    sets (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`), which wins."""
    detected = dict(OTELResourceDetector().detect().attributes)
    return Resource.create(
        {
            SERVICE_NAME: DEFAULT_SERVICE,
            SERVICE_VERSION: service_version,
            HOST_NAME: socket.gethostname(),
            HOST_ARCH: platform.machine(),
            OS_TYPE: platform.system().lower(),
            PROCESS_PID: os.getpid(),
            PROCESS_RUNTIME_NAME: platform.python_implementation(),
            PROCESS_RUNTIME_VERSION: platform.python_version(),
            **detected,
        }
    )


def ecs_fields(resource: Resource) -> dict[str, Any]:
    """`service.*` and `host.*` of every ECS record, from the resource."""
    attributes = resource.attributes
    service: dict[str, Any] = {"name": attributes.get(SERVICE_NAME, DEFAULT_SERVICE)}
    if attributes.get(SERVICE_VERSION):
        service["version"] = attributes[SERVICE_VERSION]
    environment = next((attributes[key] for key in ENVIRONMENT_KEYS if attributes.get(key)), None)
    if environment:
        service["environment"] = environment
    host: dict[str, Any] = {"name": attributes.get(HOST_NAME, socket.gethostname())}
    if attributes.get(HOST_ARCH):
        host["architecture"] = attributes[HOST_ARCH]
    return {"service": service, "host": host}
