"""Credentials come from the environment and never reach a record, a span, the console
or `wwts info`: run with sentinel secrets and search every output for them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_wwts, unique_photos

pytestmark = pytest.mark.integration
SENTINELS = {
    "WWTS_ES_API_KEY": "sentinel-apikey-5c1b0e",
    "WWTS_ES_PASSWORD": "sentinel-password-93ad7",
    "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer sentinel-otlp-token-77f2",
}
NEEDLES = ["sentinel-apikey-5c1b0e", "sentinel-password-93ad7", "sentinel-otlp-token-77f2"]


def assert_clean(text: str, where: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"a secret leaked into {where}"


def test_sentinel_secrets_appear_nowhere(tmp_path: Path, es, es_url: str, otlp_endpoint: str) -> None:
    photo = unique_photos(tmp_path / "photos", 1)[0]
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_text("not an image")
    logs = tmp_path / "logs"
    env = {**SENTINELS, "WWTS_ES_URL": es_url, "WWTS_ES_USERNAME": "elastic",
           "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint, "WWTS_LATENCY_ALERT_MS": "0"}
    runs = [
        run_wwts("classify", str(photo), str(broken), "--json", "--log-dir", str(logs), env=env),
        run_wwts("classify", str(photo), "--log-dir", str(logs), env=env),  # human console lines
        run_wwts("info", env=env),
        run_wwts("info", "--json", env=env),
        run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(logs)}),
        run_wwts("logs", "search", "--md5", "0" * 32, env=env),
    ]
    for index, run in enumerate(runs):
        assert_clean(run.stdout, f"stdout of run {index}")
        assert_clean(run.stderr, f"stderr of run {index}")
    facts = json.loads(runs[3].stdout)
    assert facts["elasticsearch"]["api_key"] == "set" and facts["elasticsearch"]["password"] == "set"
    assert facts["traces"]["headers"] == "set"
    for path in logs.iterdir():
        assert_clean(path.read_text(encoding="utf-8", errors="replace"), path.name)
    trace_id = json.loads(runs[0].stdout.splitlines()[0])["trace_id"]
    es.indices.refresh(index="wwts-logs-*")
    records = es.search(index="wwts-logs-*", query={"term": {"trace.id": trace_id}}, size=50)["hits"]["hits"]
    assert records
    assert_clean(json.dumps(records, ensure_ascii=False), "Elasticsearch records")
    deadline = time.monotonic() + 20
    spans: list = []
    while time.monotonic() < deadline and len(spans) < 5:
        es.indices.refresh(index="wwts-traces*")
        spans = es.search(index="wwts-traces*", query={"term": {"TraceId": trace_id}}, size=50)["hits"]["hits"]
        time.sleep(0.5)
    assert len(spans) == 5
    assert_clean(json.dumps(spans, ensure_ascii=False), "exported spans")
