"""The serve benchmark's load generator against a real HTTP/1.1 server on 127.0.0.1: every
request counted once, failures counted, keep-alive kept and closed connections replaced;
and its targets judged from a report's figures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.serve_bench import CLASSIFY, TARGETS, _load, figures, request_bytes, verdicts
from wwts.bench import verdicts as target_rows


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless an answer says otherwise
    bodies: list[bytes] = []
    connections = 0  # http.server makes one handler per connection

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        refused = body.startswith(b"bad")
        answer = b'{"ok":false}' if refused else b'{"ok":true}'
        self.send_response(422 if refused else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if refused:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.bodies, Recorder.connections = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_request_is_encoded_once_with_its_length() -> None:
    encoded = request_bytes("127.0.0.1", 8000, b"\x89PNG...")
    head, body = encoded.split(b"\r\n\r\n", 1)
    assert head.startswith(f"POST {CLASSIFY} HTTP/1.1\r\n".encode())
    assert b"\r\nContent-Length: 7" in head and body == b"\x89PNG..."


def test_the_clients_count_every_answer_and_reconnect_after_a_close(server: str) -> None:
    photos = [("good.jpg", b"x" * 300_000), ("bad.jpg", b"bad" + b"y" * 1000)]
    latencies, failed, seconds = asyncio.run(_load(server, photos, count=10, concurrency=2, limit_s=60))
    assert len(latencies) == 10 and all(ms > 0 for ms in latencies) and seconds > 0
    assert failed == 5  # the 422s, never a lost or doubled request
    assert sorted(len(body) for body in Recorder.bodies) == [1003] * 5 + [300_000] * 5
    # each 422 closed its connection and the client opened a new one; the 200s kept theirs
    assert 5 <= Recorder.connections <= 7


def test_a_dead_server_is_failures_not_a_crash() -> None:
    latencies, failed, _ = asyncio.run(_load("http://127.0.0.1:9", [("a", b"x")], count=3, concurrency=1, limit_s=10))
    assert len(latencies) == 3 and failed == 3


def test_targets_are_judged_at_the_top_concurrency_and_unmeasured_ones_left_out() -> None:
    report = {"ratios": {1: {"throughput_ratio": 5.0, "wwts_p99_ms": 10, "naive_p50_ms": 40},
                         16: {"throughput_ratio": 3.5, "wwts_p99_ms": 240, "naive_p50_ms": 380}}}
    found = figures(report)
    assert found == {"throughput_ratio": 3.5, "p99_vs_naive_p50": 0.63, "soak_growth_mb": None, "soak_fd_growth": None}
    report["targets"] = target_rows(found, TARGETS)
    assert [row["met"] for row in report["targets"]] == [False, True, None, None]
    lines = verdicts(report)
    assert len(lines) == 2 and lines[0].startswith("target at c=16: ") and lines[0].endswith("3.5× MISSED")
    soaked = {"ratios": {}, "soak": {"rss_growth_mb": 7.7, "fds_before": 20, "fds_after": 21}}
    soaked["targets"] = target_rows(figures(soaked), TARGETS)
    assert [row["met"] for row in soaked["targets"]] == [None, None, True, False]
