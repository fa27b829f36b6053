"""`GET /metrics` of a real `wwts serve`: after N classify requests the Prometheus text
counts them in `http_server_request_duration_seconds` by route and status code (a 422 as
a 422) and N forward stages in `wwts_stage_duration_seconds`."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.test_serve import photo_bytes, start_server, stop_server

GOOD = 5


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def count(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(value for sample, tags, value in found if sample == name and labels.items() <= tags.items())


def test_metrics_count_the_requests_and_their_stages(tmp_path: Path) -> None:
    served = start_server(tmp_path, "--max-batch-size", "1")
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            for name, data in photo_bytes(tmp_path / "photos", GOOD):
                assert client.post("/v1/classify", content=data).status_code == 200, name
            assert client.post("/v1/classify", content=b"not an image at all").status_code == 422
            response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)
    finally:
        assert stop_server(served) == 0
    route = {"http_route": "/v1/classify", "http_request_method": "POST"}
    assert count(found, "http_server_request_duration_seconds_count", **route, http_response_status_code="200") == GOOD
    assert count(found, "http_server_request_duration_seconds_count", **route, http_response_status_code="422") == 1
    assert count(found, "wwts_stage_duration_seconds_count", wwts_stage="forward") == GOOD
    assert count(found, "wwts_stage_duration_seconds_count", wwts_stage="load") == GOOD + 1  # the 422 was loaded too
    assert count(found, "wwts_images_total", event_outcome="success") == GOOD
    assert count(found, "wwts_images_total", event_outcome="failure") == 1
    assert any(name == "wwts_queue_depth" for name, _tags, _value in found)
