"""Records in a real Elasticsearch (the local integ-test node `make test` starts): the
contract's Kibana searches as query twins, `wwts logs search|ship|prune`, `elk setup`,
and an outage that loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from queries import logs as log_search
from tests.conftest import free_port, run_wwts, run_wwts_tail, unique_photos

pytestmark = pytest.mark.integration
INDEX = "wwts-logs-*"


def hits(es, query: dict, size: int = 100) -> list[dict]:
    es.indices.refresh(index=INDEX, ignore_unavailable=True, allow_no_indices=True)
    response = es.search(index=INDEX, query=query, size=size, ignore_unavailable=True, allow_no_indices=True)
    return [hit["_source"] for hit in response["hits"]["hits"]]


def ours(es, query: dict, trace_ids: set[str]) -> list[dict]:
    """The query, limited to this module's traces (other runs share the index)."""
    return hits(es, {"bool": {"filter": [query, {"terms": {"trace.id": sorted(trace_ids)}}]}})


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, es, es_url: str, data_dir: Path):
    """One classify run with shipping on: chelsea, coffee, a unique photo, a broken file;
    every latency over a 0 ms alert threshold."""
    folder = tmp_path_factory.mktemp("es-run")
    shutil.copy(data_dir / "chelsea.png", folder / "a_chelsea.png")
    shutil.copy(data_dir / "coffee.png", folder / "b_coffee.png")
    unique = unique_photos(folder / "u", 1)[0]
    (folder / "c_broken.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    logs = folder / "logs"
    env = {"WWTS_ES_URL": es_url, "WWTS_LATENCY_ALERT_MS": "0"}
    result = run_wwts("classify", str(folder), str(unique), "--json", "--log-dir", str(logs), env=env)
    assert result.returncode == 1, result.stderr  # the broken file
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    caught_up = run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(logs)})
    assert caught_up.returncode == 0, caught_up.stderr
    es.indices.refresh(index=INDEX)
    return {"objects": objects, "logs": logs, "env": env, "traces": {o["trace_id"] for o in objects}}


def test_by_image_hash(es, shipped) -> None:
    coffee = next(o for o in shipped["objects"] if o["path"].endswith("b_coffee.png"))
    # KQL: file.hash.md5 : "<md5>"
    found = hits(es, {"term": {"file.hash.md5": coffee["md5"]}})
    assert all(d["file"]["hash"]["md5"] == coffee["md5"] for d in found)
    mine = ours(es, {"term": {"file.hash.md5": coffee["md5"]}}, shipped["traces"])
    assert [d["trace"]["id"] for d in mine] == [coffee["trace_id"]]
    assert mine[0]["event"]["dataset"] == "wwts.inference"


def test_by_top1_label_in_chinese(es, shipped) -> None:
    chelsea = next(o for o in shipped["objects"] if o["path"].endswith("a_chelsea.png"))
    top1 = chelsea["labels"][0]["label"]
    # KQL: wwts.top1.label : "<label>"
    found = ours(es, {"term": {"wwts.top1.label": top1}}, shipped["traces"])
    assert {d["trace"]["id"] for d in found} == {chelsea["trace_id"]}
    # 虎斑猫 is chelsea's third label: found by "any of the top-k", not by top-1
    assert not ours(es, {"term": {"wwts.top1.label": "虎斑猫"}}, {chelsea["trace_id"]})
    any_rank = ours(es, {"term": {"wwts.labels.label": "虎斑猫"}}, shipped["traces"])
    assert {d["trace"]["id"] for d in any_rank} == {chelsea["trace_id"]}


def test_by_latency_range(es, shipped) -> None:
    good = [o for o in shipped["objects"] if o["ok"]]
    totals = sorted(o["latency_ms"]["total"] for o in good)
    threshold = (totals[0] + totals[-1]) / 2 if totals[0] != totals[-1] else totals[0] - 0.001
    expected = {o["trace_id"] for o in good if o["latency_ms"]["total"] > threshold}
    # KQL: wwts.latency_ms.total > <threshold>
    found = ours(es, {"range": {"wwts.latency_ms.total": {"gt": threshold}}}, shipped["traces"])
    assert {d["trace"]["id"] for d in found if d["event"]["dataset"] == "wwts.inference"} == expected
    assert expected


def test_failures_with_stack_trace(es, shipped) -> None:
    broken = next(o for o in shipped["objects"] if not o["ok"])
    # KQL: event.outcome : "failure"
    found = ours(es, {"term": {"event.outcome": "failure"}}, shipped["traces"])
    assert [d["trace"]["id"] for d in found] == [broken["trace_id"]]
    assert found[0]["error"]["stack_trace"].startswith("Traceback")
    assert found[0]["error"]["type"].rsplit(".", 1)[-1] == broken["error"]["type"]  # records qualify the class


def test_alerts(es, shipped) -> None:
    good = {o["trace_id"] for o in shipped["objects"] if o["ok"]}
    # KQL: event.dataset : "wwts.alert"
    found = ours(es, {"term": {"event.dataset": "wwts.alert"}}, shipped["traces"])
    assert {d["trace"]["id"] for d in found} == good
    assert all(d["log.level"] == "warning" and d["wwts"]["alert"]["threshold"] == 0.0 for d in found)


def test_by_trace_id(es, shipped) -> None:
    coffee = next(o for o in shipped["objects"] if o["path"].endswith("b_coffee.png"))
    # KQL: trace.id : "<trace id>"
    found = hits(es, {"term": {"trace.id": coffee["trace_id"]}})
    assert sorted(d["event"]["dataset"] for d in found) == ["wwts.alert", "wwts.inference"]


def test_the_index_mapping_comes_from_the_template(es, shipped) -> None:
    day = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
    mapping = es.indices.get_mapping(index=f"wwts-logs-{day}")[f"wwts-logs-{day}"]["mappings"]
    properties = mapping["properties"]
    assert properties["file"]["properties"]["hash"]["properties"]["md5"]["type"] == "keyword"
    assert properties["wwts"]["properties"]["latency_ms"]["properties"]["total"]["type"] == "float"
    assert properties["event"]["properties"]["category"]["type"] == "keyword"  # ECS categorisation is searchable
    assert properties["wwts"]["properties"]["startup"]["enabled"] is False  # kept, deliberately not indexed
    assert mapping["dynamic"] in (False, "false")  # nothing else gets mapped by guessing


def test_logs_search_cli_finds_the_same(shipped, es) -> None:
    env = shipped["env"]
    coffee = next(o for o in shipped["objects"] if o["path"].endswith("b_coffee.png"))
    chelsea = next(o for o in shipped["objects"] if o["path"].endswith("a_chelsea.png"))
    broken = next(o for o in shipped["objects"] if not o["ok"])

    def search(*args: str) -> list[dict]:
        result = run_wwts("logs", "search", "--json", "--limit", "200", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    by_md5 = search("--md5", coffee["md5"])
    assert coffee["trace_id"] in {d["trace"]["id"] for d in by_md5}
    assert all(d["file"]["hash"]["md5"] == coffee["md5"] for d in by_md5)
    assert chelsea["trace_id"] in {d["trace"]["id"] for d in search("--label", "虎斑猫")}
    total = coffee["latency_ms"]["total"]
    slow = search("--min-latency-ms", str(total - 0.01), "--md5", coffee["md5"])
    assert coffee["trace_id"] in {d["trace"]["id"] for d in slow}
    assert all(d["wwts"]["latency_ms"]["total"] >= total - 0.01 for d in slow)
    faster_only = search("--min-latency-ms", str(total + 0.01), "--md5", coffee["md5"], "--since", "5m")
    assert coffee["trace_id"] not in {d["trace"]["id"] for d in faster_only}
    assert broken["trace_id"] in {d["trace"]["id"] for d in search("--level", "error")}
    trace = search("--trace-id", coffee["trace_id"])
    assert len(trace) == 2
    newest_first = [d["@timestamp"] for d in search("--since", "1h")]
    assert newest_first == sorted(newest_first, reverse=True)
    table = run_wwts("logs", "search", "--md5", coffee["md5"], env=env)
    assert table.returncode == 0 and "record(s), newest first" in table.stdout
    assert run_wwts("logs", "search", "--since", "yesterday", env=env).returncode == 2


def test_query_builder_matches_the_kql_twins() -> None:
    body = log_search.build(log_search.LogQuery(md5="ABC", label="虎斑猫", min_latency_ms=1000, since="7d"))
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"file.hash.md5": "abc"}} in filters
    assert {"range": {"wwts.latency_ms.total": {"gte": 1000}}} in filters
    assert {"range": {"@timestamp": {"gte": "now-7d"}}} in filters
    assert body["sort"] == [{"@timestamp": {"order": "desc"}}]


def test_outage_loses_nothing_and_ship_is_exactly_once(tmp_path: Path, es, es_url: str) -> None:
    photos = unique_photos(tmp_path / "photos", 3)
    md5s = []
    import hashlib

    for photo in photos:
        md5s.append(hashlib.md5(photo.read_bytes()).hexdigest())
    logs = tmp_path / "logs"
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: Elasticsearch is down

    baseline = run_wwts("classify", *map(str, photos), "--json", "--log-dir", str(tmp_path / "logs-no-es"))
    outage, tail = run_wwts_tail("classify", *map(str, photos), "--json", "--log-dir", str(logs), env={"WWTS_ES_URL": down})
    print(f"Elasticsearch down: the run ended {tail:.2f} s after its last result")
    assert baseline.returncode == 0 and outage.returncode == 0, outage.stderr
    assert [json.loads(l)["labels"] for l in outage.stdout.splitlines()] == [
        json.loads(l)["labels"] for l in baseline.stdout.splitlines()
    ]
    warnings = [line for line in outage.stderr.splitlines() if "Elasticsearch" in line]
    assert len(warnings) == 1 and "wwts logs ship" in warnings[0]
    assert tail < 2.5  # the ~2 s shutdown budget, plus interpreter exit

    def count() -> int:
        return len(hits(es, {"bool": {"filter": [
            {"terms": {"file.hash.md5": md5s}}, {"term": {"event.dataset": "wwts.inference"}}]}}))

    assert count() == 0
    env = {"WWTS_ES_URL": es_url, "WWTS_LOG_DIR": str(logs)}
    first = run_wwts("logs", "ship", env=env)
    assert first.returncode == 0, first.stderr
    assert count() == 3
    again = run_wwts("logs", "ship", env=env)
    assert again.returncode == 0 and "shipped 0 new" in again.stdout
    (logs / ".ship-registry.json").unlink()  # a lost registry re-sends everything: still no duplicates
    resent = run_wwts("logs", "ship", env=env)
    assert resent.returncode == 0 and "shipped 0 new" in resent.stdout and "already there" in resent.stdout
    assert count() == 3


def test_prune_removes_old_indices_and_files(tmp_path: Path, es, es_url: str) -> None:
    today = dt.datetime.now(dt.UTC).date()
    old_day, kept_day = today - dt.timedelta(days=8), today - dt.timedelta(days=6)
    for day in (old_day, kept_day):
        es.index(index=f"wwts-logs-{day:%Y.%m.%d}", id=f"prune-{day}", document={"@timestamp": f"{day}T00:00:00Z"})
        (tmp_path / f"wwts-{day}.jsonl").write_text("{}\n")
        (tmp_path / f"traces-{day}.jsonl").write_text("{}\n")
    result = run_wwts("logs", "prune", "--keep-days", "7", env={"WWTS_ES_URL": es_url, "WWTS_LOG_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert not es.indices.exists(index=f"wwts-logs-{old_day:%Y.%m.%d}")
    assert es.indices.exists(index=f"wwts-logs-{kept_day:%Y.%m.%d}")
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [f"traces-{kept_day}.jsonl", f"wwts-{kept_day}.jsonl"]
    es.indices.delete(index=f"wwts-logs-{kept_day:%Y.%m.%d}")


def test_elk_setup_installs_the_templates(es, es_url: str) -> None:
    result = run_wwts("elk", "setup", env={"WWTS_ES_URL": es_url})
    assert result.returncode == 0, result.stderr
    assert "index template wwts-logs" in result.stdout and "index template wwts-traces" in result.stdout
    assert es.indices.exists_index_template(name="wwts-logs")
    assert es.indices.exists_index_template(name="wwts-traces")
