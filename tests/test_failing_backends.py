"""Backends that fail: a slow Elasticsearch, an unwritable or full log directory, and
signals mid-run. Nothing is lost, inference goes on, one warning each."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, WWTS, run_wwts, run_wwts_tail, unique_photos, user_env


@pytest.fixture
def silent_server():
    """A socket that accepts connections and never answers: a hung Elasticsearch."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.integration
def test_a_slow_elasticsearch_costs_a_bounded_wait_and_loses_nothing(tmp_path: Path, silent_server: str, es, es_url: str) -> None:
    import hashlib

    photos = unique_photos(tmp_path / "photos", 2)
    logs = tmp_path / "logs"
    result, tail = run_wwts_tail("classify", *map(str, photos), "--json", "--log-dir", str(logs),
                                 env={"WWTS_ES_URL": silent_server})
    print(f"Elasticsearch hung: the run ended {tail:.2f} s after its last result")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "Elasticsearch did not take the records" in warnings[0]
    assert tail < 2.5
    shipped = run_wwts("logs", "ship", env={"WWTS_ES_URL": es_url, "WWTS_LOG_DIR": str(logs)})
    assert shipped.returncode == 0, shipped.stderr
    es.indices.refresh(index="wwts-logs-*")
    md5s = [hashlib.md5(p.read_bytes()).hexdigest() for p in photos]
    found = es.search(index="wwts-logs-*", query={"terms": {"file.hash.md5": md5s}}, size=10)["hits"]["hits"]
    assert len(found) == 2


def test_an_unwritable_log_directory_warns_once_and_classifies(tmp_path: Path, data_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_wwts("classify", str(data_dir / "camera.png"), "--json", "--log-dir", str(blocker / "logs"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["labels"][0]["class_id"] == 872
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "could not write log records" in warnings[0]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is needed to fill the disk")
def test_a_full_disk_warns_once_and_classifies(tmp_path: Path, data_dir: Path) -> None:
    """RLIMIT_FSIZE makes every write past 2 kB fail with EFBIG, as a full disk would."""
    logs = tmp_path / "logs"
    command = ["prlimit", "--fsize=2000", "--", *WWTS, "classify", str(data_dir / "camera.png"),
               str(data_dir / "coffee.png"), "--json", "--log-dir", str(logs)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=user_env(), timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["labels"][0]["class_id"] for line in result.stdout.splitlines()] == [872, 967]
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "File too large" in warnings[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_completes_the_current_image_and_flushes(tmp_path: Path, data_dir: Path, signum: int, code: int) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    count = 300  # seconds of work: the signal arrives long before the end
    for index in range(count):
        (folder / f"img_{index:03d}.jpg").symlink_to(data_dir / "rocket.jpg")
    logs = tmp_path / "logs"
    # stdout unbuffered: `communicate` reads the pipe itself, so lines a buffered readline
    # had read ahead (a batch's results come out together) would never be seen
    process = subprocess.Popen([*WWTS, "classify", str(folder), "--json", "--log-dir", str(logs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, cwd=ROOT, env=user_env())
    assert process.stdout is not None
    first = process.stdout.readline()
    process.send_signal(signum)
    rest, errors = process.communicate(timeout=60)
    stderr = errors.decode()
    assert process.returncode == code, stderr
    results = [json.loads(line) for line in (first + rest).decode().splitlines()]
    assert 1 <= len(results) < count and all(r["ok"] for r in results)
    records = [json.loads(line) for path in logs.glob("wwts-*.jsonl") for line in path.read_text().splitlines()]
    inference = [r for r in records if r["event"]["dataset"] == "wwts.inference"]
    assert {r["trace"]["id"] for r in inference} == {r["trace_id"] for r in results}
    spans = [json.loads(line) for path in logs.glob("traces-*.jsonl") for line in path.read_text().splitlines()]
    exported = {s["traceId"] for batch in spans for rs in batch["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
                if s["name"] == "wwts.classify"}
    assert {r["trace_id"] for r in results} <= exported
    assert any("stopped by signal" in line for line in stderr.splitlines())
