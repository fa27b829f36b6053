"""The Elasticsearch and Kibana assets that ship inside the package (`deploy/elk/`):
index templates, the lifecycle policy, the Kibana saved objects. Read through
`importlib.resources`, so an installed wheel finds them wherever it runs."""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

PACKAGE = "deploy.elk"
LOGS_TEMPLATE_FILE = "index-template.json"
TRACES_TEMPLATE_FILE = "traces-template.json"
METRICS_TEMPLATE_FILE = "metrics-template.json"
LOGS_POLICY_FILE = "ilm-policy.json"
SAVED_OBJECTS_FILE = "kibana/saved-objects.ndjson"


def asset(name: str) -> Traversable:
    node = files(PACKAGE)
    for part in name.split("/"):
        node = node / part
    return node


def json_asset(name: str) -> dict[str, Any]:
    return json.loads(asset(name).read_text(encoding="utf-8"))
