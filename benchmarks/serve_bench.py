"""Load benchmark of `wwts serve` against a naive server, on loopback, in one run.

The naive baseline is the seed script wrapped in a web handler the obvious way: FastAPI
on uvicorn, one image per request inside an `async def` handler (Pillow open +
`convert("RGB")`, MD5, torchvision transforms, forward at batch 1 under `no_grad` in
eager torch, softmax, top-5, the seed's log lines), no batching, no threads. Both
servers get the same photos from the same closed-loop load generator (asyncio streams,
one keep-alive connection per client, each request encoded once), which runs on the
same machine and shares its cores.

Per concurrency level: requests/s and p50/p95/p99 latency for each server, and the
ratio. Then a soak of `wwts serve`: RSS and open file descriptors of the server process
after a warm-up and after N more requests. Everything is bounded in count and in time.

    python -m benchmarks.serve_bench [--levels 1,4,16] [--requests 240] [--soak 5000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wwts.bench import CLI_MODULE, MB, Target, default_environment, percentile, verdict_word
from wwts.bench import verdicts as target_rows
from wwts.serve.config import CLASSIFY_PATH as CLASSIFY
from wwts.serve.config import READY_PATH as READY

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LEVELS = (1, 4, 16)
DEFAULT_REQUESTS = 240  # per server and level (after WARMUP)
DEFAULT_SOAK = 5000
DEFAULT_PHOTOS = 64  # distinct photos, sent round-robin
DEFAULT_ROUNDS = 4  # per level: the servers take turns this many times
WARMUP = 24
LEVEL_TIMEOUT_S = 300.0  # a level stops there even if requests remain
SOAK_TIMEOUT_S = 900.0
START_TIMEOUT_S = 180.0  # a first ONNX export included
REQUEST_TIMEOUT_S = 120.0
# the service's targets; the first two at the highest concurrency measured
TARGETS: dict[str, Target] = {
    "throughput_ratio": Target("wwts requests/s vs the naive server's", 4.0, True, "×"),
    "p99_vs_naive_p50": Target("wwts p99 latency / the naive server's p50", 1.0, False, "×"),
    "soak_growth_mb": Target("RSS growth over the soak", 50.0, False, " MB"),
    "soak_fd_growth": Target("open file descriptors gained over the soak", 0.0, False, ""),
}


# -- the naive server ------------------------------------------------------------------


def naive_app() -> Any:
    """The seed script's per-image work in a FastAPI handler (see the module docstring)."""
    import hashlib
    import io
    import logging

    import psutil
    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from PIL import Image

    from benchmarks.seed_loop import article_model

    log = logging.getLogger("naive")
    model, labels, transform = article_model()
    process = psutil.Process()

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def classify(request: Request) -> JSONResponse:
        started = time.perf_counter()
        data = await request.body()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        md5 = hashlib.md5(data).hexdigest()
        log.info("Input: (%dx%d, MD5 %s)", image.width, image.height, md5)
        tensor = transform(image).unsqueeze(0)
        with torch.no_grad():
            logits = model(tensor)
        probabilities = torch.nn.functional.softmax(logits[0], dim=0)
        scores, indices = torch.topk(probabilities, 5)
        ranked = []
        for rank, (score, index) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True), start=1):
            log.info("Top-%d: '%s' (置信度: %.4f)", rank, labels[index], score)
            ranked.append({"rank": rank, "label": labels[index], "score": round(score, 4), "class_id": index})
        log.info("Latency: %.1f ms", (time.perf_counter() - started) * 1000.0)
        log.info("Resources: CPU %.0f%% | RSS %.0f MiB", process.cpu_percent(None), process.memory_info().rss / 2**20)
        return JSONResponse({"ok": True, "md5": md5, "labels": ranked})

    app = FastAPI()
    app.router.add_route(READY, ready, methods=["GET"])
    app.router.add_route(CLASSIFY, classify, methods=["POST"])
    return app


def serve_naive(port: int, log_file: Path) -> None:
    import logging

    import uvicorn

    logging.basicConfig(filename=str(log_file), level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
    uvicorn.run(naive_app(), host="127.0.0.1", port=port, log_config=None, access_log=False)


# -- servers as processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    """Default settings (`wwts.bench.default_environment`), this checkout importable."""
    env = default_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system


@contextlib.contextmanager
def started(name: str, command: list[str], port: int, work: Path) -> Iterator[Server]:
    """A server process, ready to answer; stopped (SIGTERM, then SIGKILL) on the way out."""
    import httpx

    with open(work / f"{name}.err", "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    server = Server(name, port, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {(work / f'{name}.err').read_text()[-2000:]}")
            try:
                if httpx.get(server.url + READY, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not ready within {START_TIMEOUT_S:g} s")
            time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the load generator -----------------------------------------------------------------


@dataclass
class Level:
    server: str
    concurrency: int
    requests: int
    failed: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms_per_request: float  # the server process's CPU time (all threads): unlike req/s, not a share of the machine


def request_bytes(host: str, port: int, data: bytes) -> bytes:
    """One keep-alive `POST /v1/classify` with `data` as its raw body, encoded once."""
    head = (
        f"POST {CLASSIFY} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode("ascii") + data


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one encoded request, read its whole answer: (status, connection kept)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


async def _load(
    url: str, photos: list[tuple[str, bytes]], count: int, concurrency: int, limit_s: float
) -> tuple[list[float], int, float]:
    """`count` requests from `concurrency` clients, each sending its next photo as soon as
    its previous answer is in; returns latencies (ms), failures and the wall time.

    The clients share the machine's cores with the servers, so they do as little as a
    client can: requests encoded once, written and read on plain asyncio streams (one
    keep-alive connection per client). An httpx client here spent ~13 ms of CPU per
    request, a third of what the cores had left for `wwts serve` at c=16."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    encoded = [request_bytes(host, int(port), data) for _name, data in photos]
    latencies: list[float] = []
    failed = 0
    next_index = 0
    deadline = time.monotonic() + limit_s

    async def client() -> None:
        nonlocal failed, next_index
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while next_index < count and time.monotonic() < deadline:
                request = encoded[next_index % len(encoded)]
                next_index += 1
                started = time.perf_counter()
                ok = False
                try:
                    if connection is None:
                        connection = await asyncio.open_connection(host, int(port))
                    status, kept = await asyncio.wait_for(_exchange(*connection, request), REQUEST_TIMEOUT_S)
                    ok = status == 200
                except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    kept = False
                if not kept and connection is not None:
                    connection[1].close()
                    connection = None
                latencies.append((time.perf_counter() - started) * 1000.0)
                failed += not ok
        finally:
            if connection is not None:
                connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, failed, time.perf_counter() - started


def measure(servers: Sequence[Server], photos: list[tuple[str, bytes]], concurrency: int, count: int,
            rounds: int) -> list[Level]:
    """Each server's figures at one concurrency: `rounds` short runs per server, the
    servers taking turns (the first one swapped each round), so that a change in the
    machine's background load falls on both alike; latencies and times are pooled."""
    pooled: dict[str, tuple[list[float], int, float, float]] = {server.name: ([], 0, 0.0, 0.0) for server in servers}
    for server in servers:
        asyncio.run(_load(server.url, photos, WARMUP, concurrency, LEVEL_TIMEOUT_S))
    for index in range(rounds):
        for server in servers if index % 2 == 0 else list(reversed(servers)):
            cpu = server.cpu_seconds()
            latencies, failed, seconds = asyncio.run(
                _load(server.url, photos, count // rounds, concurrency, LEVEL_TIMEOUT_S / rounds))
            cpu = server.cpu_seconds() - cpu
            before = pooled[server.name]
            pooled[server.name] = (before[0] + latencies, before[1] + failed, before[2] + seconds, before[3] + cpu)
    levels = []
    for name, (latencies, failed, seconds, cpu) in pooled.items():
        done = len(latencies)
        levels.append(Level(
            server=name, concurrency=concurrency, requests=done, failed=failed, seconds=round(seconds, 2),
            requests_per_s=round((done - failed) / seconds, 2) if seconds else 0.0,  # answered with a 200
            p50_ms=round(percentile(latencies, 50), 1), p95_ms=round(percentile(latencies, 95), 1),
            p99_ms=round(percentile(latencies, 99), 1), cpu_ms_per_request=round(cpu * 1000 / done, 1) if done else 0.0,
        ))
    return levels


def soak(server: Server, photos: list[tuple[str, bytes]], count: int, concurrency: int) -> dict[str, Any]:
    """RSS and open descriptors of the server after a warm-up and after `count` requests."""
    import psutil

    process = psutil.Process(server.process.pid)
    asyncio.run(_load(server.url, photos, 200, concurrency, SOAK_TIMEOUT_S))
    before = process.memory_info().rss, process.num_fds()
    latencies, failed, seconds = asyncio.run(_load(server.url, photos, count, concurrency, SOAK_TIMEOUT_S))
    time.sleep(1.5)  # the span and record exporters' last batch
    after = process.memory_info().rss, process.num_fds()
    return {
        "requests": len(latencies), "failed": failed, "concurrency": concurrency, "seconds": round(seconds, 1),
        "requests_per_s": round(len(latencies) / seconds, 2) if seconds else 0.0,
        "rss_mb_before": round(before[0] / MB, 1), "rss_mb_after": round(after[0] / MB, 1),
        "rss_growth_mb": round((after[0] - before[0]) / MB, 1),
        "fds_before": before[1], "fds_after": after[1],
    }


def load_photos(count: int) -> list[tuple[str, bytes]]:
    from benchmarks.photos import build

    directory = build()
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".jpg", ".png"))[:count]
    return [(p.name, p.read_bytes()) for p in paths]


# -- the run -----------------------------------------------------------------------------


def run(levels: Sequence[int], count: int, soak_count: int, photo_count: int, rounds: int) -> dict[str, Any]:
    from pipeline.driver import available_cores

    photos = load_photos(photo_count)
    report: dict[str, Any] = {
        "cores": available_cores(), "photos": len(photos), "requests_per_level": count,
        "photo_kib_mean": round(sum(len(d) for _, d in photos) / len(photos) / 1024, 1), "rounds": rounds,
        "load_average_before": os.getloadavg()[0], "levels": [],
    }
    with tempfile.TemporaryDirectory(prefix="wwts-serve-bench-") as tmp:
        work = Path(tmp)
        wwts_port, naive_port = free_port(), free_port()
        wwts_command = [sys.executable, "-m", CLI_MODULE, "serve", "--port", str(wwts_port), "--log-dir", str(work / "logs")]
        naive_command = [
            sys.executable, "-m", "benchmarks.serve_bench", "--serve-naive", str(naive_port),
            "--naive-log", str(work / "naive.log"),
        ]
        with started("naive", naive_command, naive_port, work) as naive, started("wwts", wwts_command, wwts_port, work) as wwts:
            for concurrency in levels:  # one server loaded at a time
                for level in measure((naive, wwts), photos, concurrency, count, rounds):
                    report["levels"].append(asdict(level))
                    print(_level_line(level), file=sys.stderr, flush=True)
            if soak_count:
                report["soak"] = soak(wwts, photos, soak_count, max(levels))
                print(f"soak: {report['soak']}", file=sys.stderr, flush=True)
    report["load_average_after"] = os.getloadavg()[0]
    report["ratios"] = _ratios(report["levels"])
    report["targets"] = target_rows(figures(report), TARGETS)
    return report


def _ratios(levels: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    by = {(row["server"], row["concurrency"]): row for row in levels}
    ratios = {}
    for (server, concurrency), row in by.items():
        naive = by.get(("naive", concurrency))
        if server == "wwts" and naive and naive["requests_per_s"]:
            ratios[concurrency] = {
                "throughput_ratio": round(row["requests_per_s"] / naive["requests_per_s"], 2),
                "wwts_p99_ms": row["p99_ms"], "naive_p50_ms": naive["p50_ms"],
                "cpu_ratio": round(naive["cpu_ms_per_request"] / row["cpu_ms_per_request"], 2)
                if row["cpu_ms_per_request"] else float("nan"),
            }
    return ratios


def _level_line(level: Level) -> str:
    return (
        f"{level.server:>5} c={level.concurrency:<3} {level.requests} requests ({level.failed} failed) in {level.seconds:.1f} s: "
        f"{level.requests_per_s:.1f} req/s, p50 {level.p50_ms:.0f} / p95 {level.p95_ms:.0f} / p99 {level.p99_ms:.0f} ms, "
        f"{level.cpu_ms_per_request:.1f} CPU ms/request"
    )


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['photos']} photos (mean {report['photo_kib_mean']} KiB), {report['cores']} cores shared with the load "
          f"generator, load average {report['load_average_before']:.1f} → {report['load_average_after']:.1f}")
    print(f"{'server':>6} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'failed':>6}")
    for row in report["levels"]:
        print(f"{row['server']:>6} {row['concurrency']:>7} {row['requests_per_s']:>8.1f} {row['p50_ms']:>8.0f} "
              f"{row['p95_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['cpu_ms_per_request']:>10.1f} {row['failed']:>6}")
    for concurrency, ratio in report["ratios"].items():
        print(f"c={concurrency}: {ratio['throughput_ratio']:.2f}× the naive requests/s; wwts p99 {ratio['wwts_p99_ms']:.0f} ms "
              f"vs naive p50 {ratio['naive_p50_ms']:.0f} ms; {ratio['cpu_ratio']:.2f}× less CPU per request")
    if "soak" in report:
        s = report["soak"]
        print(f"soak: {s['requests']} requests ({s['failed']} failed) at c={s['concurrency']}, {s['requests_per_s']} req/s; "
              f"RSS {s['rss_mb_before']} → {s['rss_mb_after']} MB ({s['rss_growth_mb']:+} MB), "
              f"fds {s['fds_before']} → {s['fds_after']}")
    for line in verdicts(report):
        print(line)


def figures(report: dict[str, Any]) -> dict[str, float | None]:
    """The figures TARGETS judge (None where that part did not run)."""
    found: dict[str, float | None] = dict.fromkeys(TARGETS)
    if report["ratios"]:
        top = report["ratios"][max(report["ratios"])]
        found["throughput_ratio"] = top["throughput_ratio"]
        if top["naive_p50_ms"]:
            found["p99_vs_naive_p50"] = round(top["wwts_p99_ms"] / top["naive_p50_ms"], 2)
    if "soak" in report:
        found["soak_growth_mb"] = report["soak"]["rss_growth_mb"]
        found["soak_fd_growth"] = report["soak"]["fds_after"] - report["soak"]["fds_before"]
    return found


def verdicts(report: dict[str, Any]) -> list[str]:
    """The targets, each met or missed; unmeasured ones are left out."""
    concurrency = max(report["ratios"]) if report["ratios"] else None
    lines = []
    for row in report["targets"]:
        if row["met"] is not None:
            where = f" at c={concurrency}" if row["key"] in ("throughput_ratio", "p99_vs_naive_p50") else ""
            lines.append(f"target{where}: {row['label']} {row['target']} — "
                         f"{row['figure']:g}{TARGETS[row['key']].unit} {verdict_word(row['met'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=",".join(map(str, DEFAULT_LEVELS)), help="concurrency levels, e.g. 1,4,16")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="requests per server and level")
    parser.add_argument("--soak", type=int, default=DEFAULT_SOAK, help="soak requests (0: no soak)")
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="distinct photos sent")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="turns per level (servers alternate)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--serve-naive", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--naive-log", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_naive is not None:
        serve_naive(args.serve_naive, args.naive_log or Path(os.devnull))
        return 0
    report = run([int(x) for x in args.levels.split(",")], args.requests, args.soak, args.photos, max(1, args.rounds))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
