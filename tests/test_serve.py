"""`wwts serve` as a user runs it: the real CLI as a subprocess on a free loopback port,
the real collector and Elasticsearch behind it, traced clients, hostile requests,
concurrency, a full queue and SIGTERM. The batcher and the small helpers are tested
alone first, with fakes (no server, no model)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DATA, ROOT, WWTS, free_port, run_wwts, unique_photos

TOKEN = "serve-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_PIXELS = 1_000_000  # the main server's bomb limit: a 1200x1000 picture is a bomb there
MAX_BODY_MB = 1
STAGES = ["load", "preprocess", "queue", "forward", "postprocess"]
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
TRACERESPONSE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
START_TIMEOUT_S = 240.0  # a first ONNX export on a slow machine included
EXIT_TIMEOUT_S = 60.0


# -- the pieces alone -----------------------------------------------------------------


class FakeHooks:
    def __init__(self) -> None:
        self.intervals: list[tuple[Any, str, int, int]] = []

    def interval(self, request: Any, name: str, start_ns: int, end_ns: int) -> None:
        self.intervals.append((request, name, start_ns, end_ns))


class FakePipeline:
    """What the batcher uses of a `Pipeline`: `open`, `complete`, `hooks`."""

    def __init__(self, fail_open: BaseException | None = None) -> None:
        self.hooks = FakeHooks()
        self.opened = threading.Event()  # set by the test: until then the "model loads"
        self.batches: list[list[Any]] = []
        self.fail_open = fail_open
        self.fail_next_batch = False

    def open(self) -> str:
        self.opened.wait(30)
        if self.fail_open is not None:
            raise self.fail_open
        return "runtime"

    def complete(self, batch: list[Any], runtime: str) -> Iterator[Any]:
        self.batches.append([p.request for p in batch])
        if self.fail_next_batch:
            self.fail_next_batch = False
            raise RuntimeError("a hook failed")
        for prepared in batch:
            yield prepared.result


def prepared(index: int) -> Any:
    from pipeline.driver import Prepared
    from pipeline.results import Result

    return Prepared(Result(path=f"img{index}", model="m"), request=index)


def batcher_for(pipeline: FakePipeline, **options: Any) -> Any:
    from pipeline.batcher import Batcher

    settings = {"max_batch_size": 4, "max_delay_s": 0.05, "max_queue": 16, **options}
    return Batcher(pipeline, **settings).start()  # type: ignore[arg-type]


def test_the_batcher_fills_batches_up_to_the_limit_and_times_each_wait() -> None:
    from pipeline.defaults import QUEUE

    pipeline = FakePipeline()
    batcher = batcher_for(pipeline)
    futures = [batcher.submit(prepared(i)) for i in range(10)]  # all queued while the model "loads"
    assert batcher.depth == 10 and not batcher.ready
    pipeline.opened.set()
    results = [f.result(timeout=30) for f in futures]
    assert batcher.ready
    assert pipeline.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # in arrival order
    assert all(r.durations_ns[QUEUE] > 0 for r in results)
    assert [(req, name) for req, name, _, _ in pipeline.hooks.intervals] == [(i, QUEUE) for i in range(10)]
    assert all(start < end for _, _, start, end in pipeline.hooks.intervals)
    assert batcher.stop(10)


def test_the_batcher_refuses_when_full_and_after_stop_and_finishes_what_it_holds() -> None:
    from pipeline.batcher import BatcherStopped, QueueFull

    pipeline = FakePipeline()
    batcher = batcher_for(pipeline, max_queue=3)
    held = [batcher.submit(prepared(i)) for i in range(3)]
    with pytest.raises(QueueFull):
        batcher.submit(prepared(3))
    held[1].cancel()  # the caller gave up: it is skipped, not forwarded
    pipeline.opened.set()
    assert batcher.stop(10)  # stopping finishes the queued inputs first
    assert held[0].result(0).path == "img0" and held[2].result(0).path == "img2"
    assert pipeline.batches == [[0, 2]]
    with pytest.raises(BatcherStopped):
        batcher.submit(prepared(4))


def test_a_failing_batch_answers_its_requests_and_the_worker_goes_on() -> None:
    pipeline = FakePipeline()
    pipeline.opened.set()
    pipeline.fail_next_batch = True
    batcher = batcher_for(pipeline, incoming=lambda: 0)
    with pytest.raises(RuntimeError, match="a hook failed"):
        batcher.submit(prepared(0)).result(timeout=30)
    assert batcher.submit(prepared(1)).result(timeout=30).path == "img1"
    assert batcher.stop(10)


def test_without_requests_on_their_way_a_batch_does_not_wait_for_company() -> None:
    pipeline = FakePipeline()
    pipeline.opened.set()
    batcher = batcher_for(pipeline, max_delay_s=3600.0, incoming=lambda: 0)
    assert batcher.submit(prepared(0)).result(timeout=60).path == "img0"  # not an hour later
    assert batcher.stop(10)


def test_a_runtime_that_does_not_open_fails_the_waiting_and_refuses_more() -> None:
    from pipeline.batcher import BatcherStopped

    pipeline = FakePipeline(fail_open=RuntimeError("no such graph"))
    batcher = batcher_for(pipeline)
    waiting = batcher.submit(prepared(0))
    pipeline.opened.set()
    assert not batcher.wait_ready(30)
    assert "no such graph" in str(batcher.failed)
    with pytest.raises(BatcherStopped, match="no such graph"):
        waiting.result(timeout=30)
    with pytest.raises(BatcherStopped):
        batcher.submit(prepared(1))


def test_top_k_and_token_parsing() -> None:
    from wwts.serve.body import check_token, parse_top_k
    from wwts.serve.errors import InvalidToken, InvalidTopK, MissingToken

    assert parse_top_k([], 5) == 5 and parse_top_k(["3"], 5) == 3 and parse_top_k([" 100 "], 5) == 100
    for bad in (["0"], ["101"], ["-1"], ["x"], ["²"], ["1", "2"], [""]):
        with pytest.raises(InvalidTopK):
            parse_top_k(bad, 5)
    check_token("Bearer s3cret", "s3cret")
    check_token("bearer  s3cret ", "s3cret")
    with pytest.raises(MissingToken):
        check_token(None, "s3cret")
    for wrong in ("Bearer s3cre", "Basic s3cret", "s3cret", "Bearer s3cret2", "Bearer ünïcode"):
        with pytest.raises(InvalidToken):
            check_token(wrong, "s3cret")


# -- a real server ------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log_dir: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every line of the daily record files, parsed (a torn line fails the test)."""
        return [json.loads(line) for path in sorted(self.log_dir.glob("wwts-*.jsonl"))
                for line in path.read_text(encoding="utf-8").splitlines()]

    def inference(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"]["dataset"] == "wwts.inference"]

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None, wait_ready: bool = True) -> Served:
    """`wwts serve` as a subprocess with a clean environment (no OTEL_*/WWTS_* but `env`)."""
    port = free_port()
    log_dir = folder / "logs"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WWTS_"))}
    if os.environ.get("WWTS_CACHE"):
        full_env["WWTS_CACHE"] = os.environ["WWTS_CACHE"]
    full_env.update(env or {})
    stderr = folder / "serve.err"
    with open(stderr, "wb") as err:
        process = subprocess.Popen(
            [*WWTS, "serve", "--port", str(port), "--log-dir", str(log_dir), *args],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=err,
        )
    served = Served(process, port, log_dir, stderr)
    if wait_ready:
        wait_until(lambda: _ready(served), START_TIMEOUT_S, f"the server was not ready: {served.err()[-3000:]}")
    return served


def _ready(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"the server exited with {served.process.returncode}: {served.err()[-3000:]}")
    try:
        return httpx.get(served.url + "/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def stop_server(served: Served) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        raise AssertionError(f"the server did not exit within {EXIT_TIMEOUT_S:g} s of SIGTERM: {served.err()[-3000:]}") from None


def wait_until(condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message)


def assert_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The contract's error answer: JSON, `ok` false, the type, a trace id, traceresponse."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["ok"] is False and body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert TRACE_ID.match(body["trace_id"]), body
    match = TRACERESPONSE.match(response.headers["traceresponse"])
    assert match and match.group(1) == body["trace_id"]
    return body


class StalledUpload:
    """A classify request whose body arrives in two parts: the server takes it in (admits
    it) on its headers and waits for the rest, so it stays in flight until `finish`."""

    def __init__(self, port: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        lines = [
            "POST /v1/classify HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/octet-stream",
            f"Content-Length: {len(data)}", "Connection: close",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        half = len(data) // 2
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data[:half])
        self.rest = data[half:]

    def finish(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.sock.sendall(self.rest)
        return read_response(self.sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of the answer on a connection the server closes."""
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def photo_bytes(folder: Path, count: int = 1) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in unique_photos(folder, count)]


def bomb_png(width: int = 1200, height: int = 1000) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- the main server: collector, Elasticsearch, a token, small limits ------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, es_url: str, otlp_endpoint: str) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    served = start_server(
        folder, "--max-body-mb", str(MAX_BODY_MB), "--max-batch-delay-ms", "20",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint, "WWTS_ES_URL": es_url, "WWTS_API_TOKEN": TOKEN,
            "WWTS_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
        },
    )
    yield served
    code = stop_server(served)
    assert code == 0, served.err()[-3000:]


def es_hits(es: Any, index: str, query: dict[str, Any], count: int, timeout: float = 45.0) -> list[dict[str, Any]]:
    """At least `count` documents (polled: spans and records arrive in batches)."""
    def search() -> list[dict[str, Any]] | None:
        es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        found = es.search(index=index, query=query, size=500, ignore_unavailable=True, allow_no_indices=True)
        hits = [hit["_source"] for hit in found["hits"]["hits"]]
        return hits if len(hits) >= count else None

    return wait_until(search, timeout, f"fewer than {count} documents in {index} for {query}", interval=0.5)


@pytest.mark.integration
def test_a_traced_client_request_is_one_trace_from_client_to_stages(server: Served, es: Any, otlp_endpoint: str,
                                                                     es_url: str, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "wwts-test-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    [(name, data)] = photo_bytes(tmp_path)
    with httpx.Client(timeout=60) as client:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
        with provider.get_tracer("tests.serve").start_as_current_span("client request") as span:
            response = client.post(server.url + "/v1/classify", params={"top_k": 3}, files={"file": (name, data)},
                                   headers=AUTH)
    provider.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True and answer["path"] == name and answer["trace_id"] == trace_id
    assert len(answer["labels"]) == 3 and answer["labels"][0]["rank"] == 1
    assert set(STAGES) <= set(answer["latency_ms"]) and answer["latency_ms"]["total"] > 0
    assert answer["runtime"] and answer["device"] and answer["bytes"] == len(data)
    traceresponse = TRACERESPONSE.match(response.headers["traceresponse"])
    assert traceresponse and traceresponse.group(1) == trace_id

    spans = es_hits(es, "wwts-traces*", {"term": {"TraceId": trace_id}}, 3 + 1 + len(STAGES))
    by_name = {s["Name"]: s for s in spans}
    root, client_span = by_name["client request"], by_name["POST"]
    server_span, classify = by_name["POST /v1/classify"], by_name["wwts.classify"]
    assert not root.get("ParentSpanId")
    assert client_span["ParentSpanId"] == root["SpanId"] and client_span["Kind"] == "SPAN_KIND_CLIENT"
    assert server_span["ParentSpanId"] == client_span["SpanId"] and server_span["Kind"] == "SPAN_KIND_SERVER"
    assert server_span["SpanId"] == traceresponse.group(2)
    assert server_span["Attributes.http.request.method"] == "POST"
    assert server_span["Attributes.http.route"] == "/v1/classify"
    assert server_span["Attributes.http.response.status_code"] == 200
    assert classify["ParentSpanId"] == server_span["SpanId"]
    assert classify["Attributes." + span_attribute("file.hash.md5")] == answer["md5"]
    assert classify["Attributes." + span_attribute("wwts.input")] == name
    for stage in STAGES:
        assert by_name[stage]["ParentSpanId"] == classify["SpanId"], stage
    starts = [by_name[stage]["@timestamp"] for stage in STAGES]
    assert starts == sorted(starts)  # queue after preprocess, before forward

    [record] = es_hits(es, "wwts-logs-*", {"bool": {"filter": [
        {"term": {"trace.id": trace_id}}, {"term": {"event.dataset": "wwts.inference"}}]}}, 1)
    assert record["http"]["request"]["method"] == "POST" and record["http"]["response"]["status_code"] == 200
    assert record["url"]["path"] == "/v1/classify" and record["user_agent"]["original"].startswith("python-httpx/")
    assert record["wwts"]["latency_ms"]["queue"] >= 0 and record["file"]["name"] == name
    assert record["file"]["hash"]["md5"] == answer["md5"] and record["span"]["id"] == classify["SpanId"]

    shown = run_wwts("trace", "show", trace_id, env={"WWTS_ES_URL": es_url})
    assert shown.returncode == 0, shown.stderr
    expected = {"client request": 0, "POST": 1, "POST /v1/classify": 2, "wwts.classify": 3, **dict.fromkeys(STAGES, 4)}
    assert {name: _depth(shown.stdout, name) for name in expected} == expected


def span_attribute(ecs: str) -> str:
    """The `wwts.classify` attribute that carries the record's field `ecs` (one mapping)."""
    from telemetry.fields import FIELDS

    return next(row.span for row in FIELDS if row.ecs == ecs and row.span)


def _depth(waterfall: str, name: str) -> int:
    """How deep `name` sits in `trace show`'s span tree (two spaces a level)."""
    for line in waterfall.splitlines():
        cells = [cell for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0].strip() == name:
            first = cells[0][1:] if cells[0].startswith(" ") else cells[0]
            return (len(first) - len(first.lstrip(" "))) // 2
    raise AssertionError(f"{name!r} is not in the waterfall:\n{waterfall}")


def _chunked_over_the_limit(port: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A chunked body that passes the limit and never ends: the answer comes anyway."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = os.urandom(64 * 1024)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY_MB * 16 + 2))
    sock.sendall(head + body)  # no final 0-length chunk: the body is never complete
    return read_response(sock)


ERROR_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("empty body", {"content": b""}, 400, "EmptyBody"),
    ("multipart without a file field", {"files": {"other": ("x.png", b"abc")}}, 400, "MissingFile"),
    ("multipart with a text field only", {"data": {"file": "not a file"}, "files": {"x": ("x", b"1")}}, 400, "MissingFile"),
    ("an empty uploaded file", {"files": {"file": ("empty.jpg", b"")}}, 400, "EmptyBody"),
    ("top_k not a number", {"params": {"top_k": "five"}, "content": b"x"}, 400, "InvalidTopK"),
    ("top_k zero", {"params": {"top_k": "0"}, "content": b"x"}, 400, "InvalidTopK"),
    ("top_k too large", {"params": {"top_k": "5000"}, "content": b"x"}, 400, "InvalidTopK"),
    ("a malformed multipart body", {"content": b"--x\r\nno headers", "headers": {"Content-Type": "multipart/form-data"}},
     400, "MalformedBody"),
    ("no token", {"content": b"x", "auth": False}, 401, "MissingToken"),
    ("a wrong token", {"content": b"x", "headers": {"Authorization": "Bearer wrong"}}, 401, "InvalidToken"),
    ("a body over --max-body-mb", {"content": b"\0" * (MAX_BODY_MB * 2**20 + 1)}, 413, "BodyTooLarge"),
    ("text, not an image", {"content": b"this is not an image at all"}, 422, "UnidentifiedImageError"),
    ("a truncated PNG", {"content": (DATA / "coffee.png").read_bytes()[:5000]}, 422, "TruncatedImage"),
    ("a decompression bomb", {"content": bomb_png()}, 422, "DecompressionBomb"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("what", "request_args", "status", "kind"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_error_of_the_contract_answers_json_and_the_server_stays_healthy(
    server: Served, what: str, request_args: dict[str, Any], status: int, kind: str
) -> None:
    args = dict(request_args)
    headers = {**({} if args.pop("auth", True) is False else AUTH), **args.pop("headers", {})}
    response = httpx.post(server.url + "/v1/classify", headers=headers, timeout=60, **args)
    assert_error(response, status, kind)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if status == 413:
        assert response.headers["connection"] == "close"
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    assert server.process.poll() is None


@pytest.mark.integration
def test_a_body_over_the_limit_is_refused_before_it_is_complete(server: Served) -> None:
    status, headers, body = _chunked_over_the_limit(server.port)
    assert status == 413 and body["error"]["type"] == "BodyTooLarge" and "traceresponse" in headers
    declared = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    declared.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: {50 * 2**30}\r\n\r\n".encode())  # 50 GiB announced, none sent
    status, _, body = read_response(declared)
    assert status == 413 and body["error"]["type"] == "BodyTooLarge"
    waiting = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    waiting.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    f"Content-Length: {50 * 2**30}\r\nExpect: 100-continue\r\n\r\n".encode())
    status, _, body = read_response(waiting)  # the refusal first: never a "100 Continue" that asks for the body
    assert status == 413 and body["error"]["type"] == "BodyTooLarge"


@pytest.mark.integration
def test_routing_errors_are_json_too(server: Served) -> None:
    assert_error(httpx.get(server.url + "/v2/nothing", timeout=10), 404, "NotFound")
    assert_error(httpx.get(server.url + "/v1/classify", headers=AUTH, timeout=10), 405, "MethodNotAllowed")


@pytest.mark.integration
def test_64_concurrent_requests_from_16_clients_share_forward_passes(server: Served, es: Any, tmp_path: Path) -> None:
    photos = photo_bytes(tmp_path, 8)

    def client(index: int) -> list[httpx.Response]:
        with httpx.Client(timeout=120, headers=AUTH) as http:
            return [http.post(server.url + "/v1/classify", content=photos[(index + i) % len(photos)][1])
                    for i in range(4)]

    with ThreadPoolExecutor(16) as pool:
        responses = [r for batch in pool.map(client, range(16)) for r in batch]
    assert len(responses) == 64
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    trace_ids = {r.json()["trace_id"] for r in responses}
    assert len(trace_ids) == 64  # one trace per request

    def batched_forwards() -> list[dict[str, Any]] | None:
        hits = es_hits(es, "wwts-traces*", {"bool": {"filter": [
            {"term": {"Name": "forward"}}, {"terms": {"TraceId": sorted(trace_ids)}}]}}, 1)
        linked = [json.loads(h.get("Link") or "[]") for h in hits]
        covered = {link["traceID"] for links in linked for link in links} | {
            h["TraceId"] for h, links in zip(hits, linked, strict=True) if not links}
        return hits if covered >= trace_ids else None

    forwards = wait_until(batched_forwards, 60, "the forward spans do not cover every request", interval=1.0)
    sizes = [f.get("Attributes.wwts.batch.size", 1) for f in forwards]
    assert max(sizes) > 1, sizes  # requests shared forward passes
    assert sum(sizes) == 64  # each request in exactly one forward pass
    for forward in forwards:
        links = json.loads(forward.get("Link") or "[]")
        assert len(links) == (forward.get("Attributes.wwts.batch.size") or 0), forward


# -- servers of their own (no backends: spans and records in their local files) --------------


def test_a_full_queue_answers_503_with_retry_after_at_once_and_memory_stays_flat(tmp_path: Path) -> None:
    served = start_server(tmp_path, "--max-queue", "2")
    try:
        [(_, data)] = photo_bytes(tmp_path / "photos")
        stalled = [StalledUpload(served.port, data) for _ in range(2)]  # the two admitted requests
        classified = 0

        def refused() -> httpx.Response | None:
            nonlocal classified
            response = httpx.post(served.url + "/v1/classify", content=data, timeout=30)
            classified += response.status_code == 200  # sent before both uploads were taken in
            return response if response.status_code == 503 else None

        first = wait_until(refused, 30, "the queue never filled")
        assert_error(first, 503, "QueueFull")
        assert first.headers["retry-after"].isdigit()
        with httpx.Client(timeout=30) as http:
            for _ in range(100):  # warm-up: every allocation of the 503 path made once
                http.post(served.url + "/v1/classify", content=data)
            before = served.rss()
            answers = [http.post(served.url + "/v1/classify", content=data) for _ in range(500)]
            after = served.rss()
        assert {(r.status_code, r.json()["error"]["type"], "retry-after" in r.headers) for r in answers} == {
            (503, "QueueFull", True)}
        assert after - before < 16 * 2**20, f"RSS grew by {(after - before) / 2**20:.1f} MiB over 500 refusals"
        assert [s.finish()[0] for s in stalled] == [200, 200]  # the admitted ones were never affected
        assert httpx.post(served.url + "/v1/classify", content=data, timeout=60).status_code == 200
    finally:
        assert stop_server(served) == 0, served.err()[-3000:]
    records = served.inference()  # one per request, the refused ones included
    statuses = [r["http"]["response"]["status_code"] for r in records]
    assert statuses.count(200) == classified + 3 and statuses.count(503) == len(records) - statuses.count(200) >= 601
    assert {r["error"]["type"] for r in records if r["event"]["outcome"] == "failure"} == {"wwts.serve.errors.QueueFull"}


def test_sigterm_finishes_the_requests_in_flight_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    served = start_server(tmp_path, "--max-queue", "3")
    try:
        _stop_with_requests_in_flight(served, tmp_path)
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def _stop_with_requests_in_flight(served: Served, tmp_path: Path) -> None:
    [(_, data)] = photo_bytes(tmp_path / "photos")
    stalled = [StalledUpload(served.port, data, {"User-Agent": f"stalled-{i}"}) for i in range(3)]
    wait_until(lambda: httpx.post(served.url + "/v1/classify", content=data, timeout=30).status_code == 503, 30,
               "the three uploads were not all admitted")  # QueueFull: all three are in flight

    served.process.send_signal(signal.SIGTERM)
    stopping = wait_until(
        lambda: (r := httpx.post(served.url + "/v1/classify", content=data, timeout=30)).json()["error"]["type"]
        == "ServerStopping" and r, 30, "new requests were not refused after SIGTERM")
    assert_error(stopping, 503, "ServerStopping")
    assert stopping.headers["retry-after"].isdigit() and stopping.headers["connection"] == "close"
    assert_error(httpx.get(served.url + "/readyz", timeout=10), 503, "ServerStopping")
    assert served.process.poll() is None  # still finishing the three

    answers = [s.finish() for s in stalled]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert all(body["ok"] and body["labels"] for _, _, body in answers)
    assert served.process.wait(EXIT_TIMEOUT_S) == 0, served.err()[-3000:]

    records = served.records()  # every line parses: nothing half-written
    inference = [r for r in records if r["event"]["dataset"] == "wwts.inference"]
    finished = [r for r in inference if r.get("user_agent", {}).get("original", "").startswith("stalled-")]
    assert sorted(r["user_agent"]["original"] for r in finished) == ["stalled-0", "stalled-1", "stalled-2"]
    assert all(r["http"]["response"]["status_code"] == 200 and r["event"]["outcome"] == "success" for r in finished)
    assert {r["error"]["type"].rsplit(".", 1)[-1] for r in inference if r not in finished} == {"QueueFull", "ServerStopping"}
    for path in served.log_dir.glob("traces-*.jsonl"):  # the spans were flushed whole, too
        assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert "stopped (signal 15)" in served.err()


def test_readyz_answers_503_until_the_model_is_loaded(tmp_path: Path) -> None:
    """The torch runtime imports torch and timm and builds the model: seconds in which the
    server already answers (its socket is bound before the model starts loading)."""
    served = start_server(tmp_path, "--runtime", "torch", wait_ready=False)
    try:
        def connects() -> bool:
            try:
                socket.create_connection(("127.0.0.1", served.port), timeout=1).close()
                return True
            except OSError:
                assert served.process.poll() is None, served.err()
                return False

        wait_until(connects, START_TIMEOUT_S, "the server never listened", interval=0.05)
        early = httpx.get(served.url + "/readyz", timeout=30)
        assert_error(early, 503, "NotReady")
        assert early.headers["retry-after"].isdigit()
        assert httpx.get(served.url + "/healthz", timeout=30).json()["ok"] is True
        assert_error(httpx.post(served.url + "/v1/classify", content=b"x", timeout=30), 503, "NotReady")
        wait_until(lambda: _ready(served), START_TIMEOUT_S, "the model never loaded")
        ready = httpx.get(served.url + "/readyz", timeout=30).json()
        assert ready["ok"] is True and ready["runtime"] == "torch"
        response = httpx.post(served.url + "/v1/classify", content=(DATA / "rocket.jpg").read_bytes(), timeout=60)
        assert response.status_code == 200 and response.json()["runtime"] == "torch"
    finally:
        assert stop_server(served) == 0, served.err()[-3000:]
