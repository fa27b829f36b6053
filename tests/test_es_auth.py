"""Elasticsearch answering 401/403, against a real node with security on (the `es_secure`
fixture of tests/backends.py starts it: `python3 -m deploy.servers up es-secure`, port
9210, file-realm users). A refused run finishes on time with one warning, keeps every
record on disk, and `wwts logs ship` with the right credentials sends them exactly once.
No credential ever shows in output or in the log files."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from tests.backends import SecureNode
from tests.conftest import run_wwts, run_wwts_tail, unique_photos

pytestmark = pytest.mark.integration
INDEX = "wwts-logs-*"


@pytest.fixture(scope="session")
def secure(es_secure: SecureNode) -> SecureNode:
    return es_secure


@pytest.fixture(scope="session")
def secure_es(es_secure_client):
    return es_secure_client


def md5s_of(photos: list[Path]) -> list[str]:
    return [hashlib.md5(photo.read_bytes()).hexdigest() for photo in photos]


def inference_count(es, md5s: list[str]) -> int:
    es.indices.refresh(index=INDEX, ignore_unavailable=True, allow_no_indices=True)
    response = es.search(
        index=INDEX,
        query={"bool": {"filter": [{"terms": {"file.hash.md5": md5s}}, {"term": {"event.dataset": "wwts.inference"}}]}},
        size=100,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return len(response["hits"]["hits"])


def assert_never_shown(secrets: list[str], outputs: list[str], log_dir: Path) -> None:
    """No secret in any output, nor in any file under the log directory (records, traces,
    the shipping registry)."""
    files = [path for path in log_dir.rglob("*") if path.is_file()]
    assert files, f"nothing was written to {log_dir}"
    for secret in secrets:
        for text in outputs:
            assert secret not in text
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret[:3]}… leaked into {path}"


def comparable(stdout: str) -> list[dict]:
    """Results without what differs between two runs of the same photos."""
    objects = [json.loads(line) for line in stdout.splitlines()]
    return [{k: v for k, v in o.items() if k not in ("trace_id", "latency_ms")} for o in objects]


def refused_run(tmp_path: Path, secure: SecureNode, env: dict[str, str], status: str, secrets: list[str]):
    """Classify three fresh photos while Elasticsearch refuses: same results as without it,
    one warning naming the refusal, on time, records on disk and not in the index."""
    photos = unique_photos(tmp_path / "photos", 3)
    logs = tmp_path / "logs"
    baseline = run_wwts("classify", *map(str, photos), "--json", "--log-dir", str(tmp_path / "logs-no-es"))
    assert baseline.returncode == 0, baseline.stderr
    refused, tail = run_wwts_tail("classify", *map(str, photos), "--json", "--log-dir", str(logs), env=env)
    print(f"Elasticsearch answering {status}: the run ended {tail:.2f} s after its last result")
    print(refused.stderr)
    assert refused.returncode == 0, refused.stderr
    assert comparable(refused.stdout) == comparable(baseline.stdout)
    assert "Traceback" not in refused.stderr
    warnings = [line for line in refused.stderr.splitlines() if "warn" in line.lower()]
    assert len(warnings) == 1, refused.stderr
    assert "Elasticsearch" in warnings[0] and "wwts logs ship" in warnings[0] and status in warnings[0]
    assert [line for line in refused.stderr.splitlines() if "Elasticsearch" in line] == warnings
    assert tail < 2.5  # the ~2 s shutdown budget, plus interpreter exit
    assert_never_shown(secrets, [refused.stdout, refused.stderr], logs)
    records = [
        json.loads(line)
        for path in logs.glob("wwts-*.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    kept = {r["file"]["hash"]["md5"] for r in records if r.get("event", {}).get("dataset") == "wwts.inference"}
    assert kept == set(md5s_of(photos))
    return photos, logs


def ship_exactly_once(secure: SecureNode, secure_es, photos: list[Path], logs: Path, env: dict[str, str]) -> None:
    md5s = md5s_of(photos)
    assert inference_count(secure_es, md5s) == 0
    env = {**env, "WWTS_LOG_DIR": str(logs)}
    first = run_wwts("logs", "ship", env=env)
    assert first.returncode == 0, first.stderr
    assert inference_count(secure_es, md5s) == len(photos)
    again = run_wwts("logs", "ship", env=env)
    assert again.returncode == 0 and "shipped 0 new" in again.stdout, again.stdout + again.stderr
    assert inference_count(secure_es, md5s) == len(photos)


def basic_header(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_wrong_password_401_keeps_records_for_a_later_ship(tmp_path: Path, secure: SecureNode, secure_es) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = secure.env(password=wrong)
    secrets = [wrong, basic_header(secure.user, wrong)]
    photos, logs = refused_run(tmp_path, secure, env, "401", secrets)

    # `logs ship` with the same wrong password: refused, one line, nothing lost, nothing shown
    refused = run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(logs)})
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1 and "401" in refused.stderr, refused.stderr
    assert_never_shown(secrets, [refused.stdout, refused.stderr], logs)
    assert inference_count(secure_es, md5s_of(photos)) == 0

    ship_exactly_once(secure, secure_es, photos, logs, secure.env())
    assert_never_shown([secure.password, basic_header(secure.user, secure.password)], [], logs)


def test_no_write_privilege_403_keeps_records_for_a_later_ship(tmp_path: Path, secure: SecureNode, secure_es) -> None:
    env = secure.env(user=secure.nopriv_user, password=secure.nopriv_password)
    secrets = [secure.nopriv_password, basic_header(secure.nopriv_user, secure.nopriv_password)]
    photos, logs = refused_run(tmp_path, secure, env, "403", secrets)
    ship_exactly_once(secure, secure_es, photos, logs, secure.env())


def test_info_says_whether_the_credentials_are_accepted(secure: SecureNode) -> None:
    def info(env: dict[str, str]) -> dict:
        result = run_wwts("info", "--json", env=env)
        assert result.returncode == 0, result.stderr
        for secret in (env["WWTS_ES_PASSWORD"], basic_header(env["WWTS_ES_USERNAME"], env["WWTS_ES_PASSWORD"])):
            assert secret not in result.stdout and secret not in result.stderr
        return json.loads(result.stdout)["elasticsearch"]

    right = info(secure.env())
    assert right["answers"] is True and right["password"] == "set" and right["username"] == "set"
    assert right["url"] == secure.url
    wrong = info(secure.env(password=f"wrong-{uuid.uuid4().hex}"))
    assert wrong["answers"] is False and wrong["password"] == "set"
    # authenticated but allowed nothing beyond `monitor`: the cluster answers to it
    assert info(secure.env(user=secure.nopriv_user, password=secure.nopriv_password))["answers"] is True


def test_unknown_api_key_is_sent_as_an_api_key_and_never_shown(tmp_path: Path, secure: SecureNode, secure_es) -> None:
    """A well-formed key the node does not know: the node sees ApiKey credentials (its 401
    says so), the run warns once and keeps the records, the key shows nowhere."""
    from elasticsearch import AuthenticationException

    from telemetry import elastic

    key_id, secret = f"wwts-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    encoded = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    with pytest.raises(AuthenticationException) as refused:
        elastic.client(elastic.EsConfig(url=secure.url, api_key=encoded)).cluster.health()
    assert str(refused.value.body["error"].get("additional_unsuccessful_credentials", "")).startswith("API key:")

    env = {"WWTS_ES_URL": secure.url, "WWTS_ES_API_KEY": encoded}
    photos, logs = refused_run(tmp_path, secure, env, "401", [encoded, secret])
    shipped_with_key = run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(logs)})
    assert shipped_with_key.returncode == 1 and "401" in shipped_with_key.stderr
    assert_never_shown([encoded, secret], [shipped_with_key.stdout, shipped_with_key.stderr], logs)
    ship_exactly_once(secure, secure_es, photos, logs, secure.env())


# An API key that the node itself issued cannot be tested here: the integ-test-zip has no
# analysis-common module, which the .security index needs, so POST /_security/api_key
# answers 400 (see deploy/elk/local/README.md). The key path is covered by the refused
# unknown key above; issuing keys is exercised against the docker-compose stack.
