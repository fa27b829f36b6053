"""Telemetry that conforms: every field of the records and every attribute of the spans a
real run writes (success, failure, alert, startup) is checked against the ECS
definitions (tests/ecs_reference.py) and the OpenTelemetry semantic-convention
registry, and the index template against both."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from telemetry.assets import LOGS_TEMPLATE_FILE, json_asset
from tests.conftest import run_wwts
from tests.ecs_reference import CATEGORY_TYPES, ECS, ECS_VERSION, NAMESPACES

CUSTOM = "wwts"
# kept in _source but not indexed on purpose (README, "Where things go")
UNINDEXED = ("wwts.startup",)
NUMERIC = {"long", "integer", "float", "double", "scaled_float", "short", "byte"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One run that writes every kind of record: startup, success, failure, alert."""
    folder = tmp_path_factory.mktemp("conformance")
    logs = folder / "logs"
    broken = folder / "broken.jpg"
    broken.write_text("not a JPEG")
    done = run_wwts(
        "classify", str(data_dir / "coffee.png"), str(broken), "--json", "--log-dir", str(logs),
        env={"WWTS_LATENCY_ALERT_MS": "0", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=conformance"},
    )
    assert done.returncode == 1, done.stderr  # one input failed, on purpose
    records = [json.loads(line) for path in logs.glob("wwts-*.jsonl") for line in path.read_text().splitlines()]
    spans = []
    for path in logs.glob("traces-*.jsonl"):
        for line in path.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    spans += [{**span, "resource": resource["resource"]} for span in scope["spans"]]
    return records, spans


def leaves(document: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf; arrays of objects give their keys' paths."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(document, list):
        for item in document:
            yield from leaves(item, prefix)
    else:
        yield prefix, document


@cache
def template_fields() -> dict[str, dict[str, Any]]:
    """Every mapped leaf of the logs template: path -> mapping (objects that are not
    indexed count as leaves)."""
    fields: dict[str, dict[str, Any]] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, mapping in properties.items():
            path = f"{prefix}{name}"
            if "properties" in mapping:
                walk(mapping["properties"], path + ".")
            else:
                fields[path] = mapping

    template = json_asset(LOGS_TEMPLATE_FILE)
    assert template["template"]["mappings"]["dynamic"] is False  # nothing is mapped by guessing
    walk(template["template"]["mappings"]["properties"], "")
    return fields


def python_type_fits(mapping_type: str, value: Any) -> bool:
    if mapping_type in ("keyword", "text", "date"):
        return isinstance(value, str)
    if mapping_type in ("long", "integer", "short", "byte"):
        return isinstance(value, int) and not isinstance(value, bool)
    if mapping_type in NUMERIC:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if mapping_type == "boolean":
        return isinstance(value, bool)
    return False


def test_every_record_field_is_ecs_or_ours_and_mapped_with_its_type(run) -> None:
    records, _spans = run
    datasets = {r["event"]["dataset"] for r in records}
    assert {"wwts.startup", "wwts.inference", "wwts.alert"} <= datasets
    assert {r["event"].get("outcome") for r in records if r["event"]["dataset"] == "wwts.inference"} == {"success", "failure"}
    mapped = template_fields()
    problems = []
    for record in records:
        assert record["ecs.version"] == ECS_VERSION
        for path, value in leaves(record):
            if path.startswith(UNINDEXED):
                assert any(mapped.get(p, {}).get("enabled") is False for p in UNINDEXED if path.startswith(p)), path
                continue
            namespace = path.split(".")[0]
            if namespace in NAMESPACES:
                definition = ECS.get(path)
                if definition is None:
                    problems.append(f"{path}: not an ECS {ECS_VERSION} field wwts knows")
                    continue
                if not python_type_fits(definition.type, value):
                    problems.append(f"{path}: {value!r} is not a {definition.type}")
                if definition.allowed is not None and value not in definition.allowed:
                    problems.append(f"{path}: {value!r} is not an allowed ECS value")
                expected = definition.type
            elif namespace == CUSTOM:
                expected = None
            else:
                problems.append(f"{path}: neither an ECS field nor under {CUSTOM}.")
                continue
            mapping = mapped.get(path)
            if mapping is None:
                problems.append(f"{path}: not mapped by the index template (dynamic: false drops it)")
            elif expected is not None and mapping["type"] != expected:
                problems.append(f"{path}: mapped as {mapping['type']}, ECS says {expected}")
            elif not python_type_fits(mapping["type"], value):
                problems.append(f"{path}: {value!r} does not fit its mapping {mapping['type']}")
        event = record["event"]
        for category in event.get("category", []):
            assert set(event.get("type", [])) <= CATEGORY_TYPES.get(category, set()), event
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_service_identity_comes_from_the_resource(run) -> None:
    records, spans = run
    assert {r["service"]["name"] for r in records} == {"wwts"}
    assert {r["service"]["environment"] for r in records} == {"conformance"}
    resource = {a["key"]: a["value"]["stringValue"] for a in spans[0]["resource"]["attributes"] if "stringValue" in a["value"]}
    assert resource["service.name"] == "wwts" and resource["deployment.environment.name"] == "conformance"


def test_failures_carry_the_standard_error_fields(run) -> None:
    records, spans = run
    [failure] = [r for r in records if r["event"].get("outcome") == "failure"]
    assert failure["error"]["type"] == "PIL.UnidentifiedImageError"
    assert failure["error"]["stack_trace"].startswith("Traceback (most recent call last):")
    assert "The above exception was the direct cause" in failure["error"]["stack_trace"]  # Pillow's origin kept
    assert failure["file"]["path"].startswith("/") and failure["wwts"]["input"].endswith("broken.jpg")
    root = next(s for s in spans if s["name"] == "wwts.classify" and s["traceId"] == failure["trace"]["id"])
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert attributes["error.type"]["stringValue"] == failure["error"]["type"]
    assert root["status"]["code"] == 2 and root["status"]["message"] == failure["error"]["message"]
    events = [e for s in spans if s["traceId"] == root["traceId"] for e in s.get("events", []) if e["name"] == "exception"]
    types = {a["value"]["stringValue"] for e in events for a in e["attributes"] if a["key"] == "exception.type"}
    assert types == {failure["error"]["type"]}


def test_event_duration_means_the_stage_time_for_both_outcomes(run) -> None:
    """One definition: the sum of the stage times of the input (the README says so);
    a 2 ms failure shows 2 ms, not the wait for the model."""
    records, _spans = run
    for record in (r for r in records if r["event"]["dataset"] == "wwts.inference"):
        total_ms = record["wwts"]["latency_ms"]["total"]
        assert abs(record["event"]["duration"] / 1e6 - total_ms) < 0.001, record["event"]


@cache
def semconv_names() -> frozenset[str]:
    names = set()
    for package in ("opentelemetry.semconv.attributes", "opentelemetry.semconv._incubating.attributes"):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            for key, value in vars(importlib.import_module(f"{package}.{info.name}")).items():
                if key.isupper() and isinstance(value, str):
                    names.add(value)
    return frozenset(names)


def test_span_attributes_are_semantic_conventions_or_ours(run) -> None:
    _records, spans = run
    known = semconv_names()
    seen = set()
    for span in spans:
        groups = [span.get("attributes", []), span["resource"].get("attributes", [])]
        groups += [e.get("attributes", []) for e in span.get("events", [])]
        groups += [link.get("attributes", []) for link in span.get("links", [])]
        seen |= {a["key"] for group in groups for a in group}
    strangers = sorted(key for key in seen if key not in known and not key.startswith(f"{CUSTOM}."))
    assert not strangers, strangers
    assert {"file.path", "file.size", "error.type", "exception.type"} <= seen


def test_the_resource_snapshot_is_ours_and_normalised(run) -> None:
    _records, spans = run
    stages = [s for s in spans if s["name"] in ("load", "preprocess", "forward", "postprocess")]
    assert stages
    for span in stages:
        attributes = {a["key"]: a["value"] for a in span["attributes"]}
        cpu = attributes["wwts.resource.process.cpu.utilization"]
        assert 0 <= float(cpu.get("doubleValue", cpu.get("intValue", -1))) <= 1.0  # of all CPUs, not of one
        assert not any(key.startswith(("process.", "system.", "hw.")) for key in attributes)


def test_the_template_follows_ecs_where_it_maps_ecs_fields() -> None:
    problems = []
    for path, mapping in template_fields().items():
        namespace = path.split(".")[0]
        if namespace not in NAMESPACES:
            assert namespace == CUSTOM, path
            continue
        definition = ECS.get(path)
        if definition is None:
            problems.append(f"{path}: mapped but not in the ECS reference")
            continue
        if mapping["type"] != definition.type:
            problems.append(f"{path}: {mapping['type']} where ECS {definition.since} has {definition.type}")
        has_text = mapping.get("fields", {}).get("text", {}).get("type") == "text"
        if has_text != definition.text:
            problems.append(f"{path}: the .text multi-field {'is missing' if definition.text else 'is not ECS'}")
    assert not problems, "\n".join(problems)
