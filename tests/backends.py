"""Session fixtures for the real backends: Elasticsearch (plain and with security on), the
OpenTelemetry Collector (the default one, plus extra instances with their own settings)
and Jaeger v2.

Each fixture starts its local server through deploy/servers.py, or reuses it when it
already runs, unless a WWTS_TEST_* variable points at one (`WWTS_TEST_ES_URL`,
`WWTS_TEST_OTLP_ENDPOINT`, `WWTS_TEST_ES_SECURE_URL` + `_USER`/`_PASSWORD`/`NOPRIV_*`,
`WWTS_TEST_JAEGER_OTLP_ENDPOINT` + `WWTS_TEST_JAEGER_QUERY_URL`). A backend that cannot be
had fails the tests that need it, it never skips them: CI runs a bare `python -m pytest`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from deploy import servers


@dataclasses.dataclass(frozen=True)
class SecureNode:
    """The Elasticsearch node with security on and its two file-realm users."""

    url: str
    user: str
    password: str
    nopriv_user: str
    nopriv_password: str

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        return {
            "WWTS_ES_URL": self.url,
            "WWTS_ES_USERNAME": self.user if user is None else user,
            "WWTS_ES_PASSWORD": self.password if password is None else password,
        }


@dataclasses.dataclass(frozen=True)
class JaegerEndpoints:
    otlp_endpoint: str       # http://host:port, OTLP/gRPC (OTEL_EXPORTER_OTLP_ENDPOINT's form)
    collector_endpoint: str  # host:port of the same, as config.jaeger.yaml's WWTS_JAEGER_OTLP_ENDPOINT
    query_url: str           # GET {query_url}/api/traces/{id}, /api/v3/traces/{id}


@dataclasses.dataclass(frozen=True)
class CollectorEndpoints:
    name: str
    otlp_endpoint: str       # http://host:port, OTLP/gRPC
    otlp_http_endpoint: str  # http://host:port, OTLP/HTTP
    traces_file: Path        # its file exporter's OTLP-JSON lines
    log_file: Path


@contextlib.contextmanager
def _live(request: pytest.FixtureRequest) -> Iterator[None]:
    """Show a server's start-up progress on the terminal: a cold build takes minutes."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        yield


def _start(request: pytest.FixtureRequest, server: servers.Server) -> dict[str, str]:
    try:
        with _live(request):
            return servers.up(server)
    except servers.ServerError as exc:
        pytest.fail(f"could not start {server.label}: {exc}", pytrace=False)


def _backend_url(request: pytest.FixtureRequest, variable: str, server: Callable[[], servers.Server],
                 export: str) -> str:
    """The URL in `variable`, else that of the local server, started (or reused) now."""
    return os.environ.get(variable) or _start(request, server())[export]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((servers.HOST, 0))
        return sock.getsockname()[1]


def _check_es(url: str, **auth: object) -> None:
    from elasticsearch import Elasticsearch

    try:
        Elasticsearch(url, request_timeout=5, **auth).cluster.health(wait_for_status="yellow", timeout="30s")
    except Exception as exc:  # noqa: BLE001 - any failure here means the backend is missing
        pytest.fail(f"Elasticsearch at {url} does not answer: {exc}", pytrace=False)


def _check_tcp(url: str, what: str) -> None:
    parsed = urllib.parse.urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 4317), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"{what} at {url} does not answer: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def es_url(request: pytest.FixtureRequest) -> str:
    url = _backend_url(request, "WWTS_TEST_ES_URL", servers.es_from_env, "WWTS_ES_URL")
    _check_es(url)
    return url


@pytest.fixture(scope="session")
def es(es_url: str):
    from elasticsearch import Elasticsearch

    return Elasticsearch(es_url, request_timeout=30)


def _local_collector(es_url: str) -> servers.Collector:
    """The default collector, exporting into the test Elasticsearch, with its config's
    defaults (not whatever WWTS_ES_URL or WWTS_SAMPLING_* the shell has)."""
    return dataclasses.replace(servers.collector_from_env(), es_url=es_url, es_auth=servers.EsAuth(), env={})


@pytest.fixture(scope="session")
def otlp_endpoint(request: pytest.FixtureRequest) -> str:
    """The collector's OTLP/gRPC endpoint (it exports into the test Elasticsearch)."""
    url = os.environ.get("WWTS_TEST_OTLP_ENDPOINT") or _start(
        request, _local_collector(request.getfixturevalue("es_url"))
    )["WWTS_OTLP_GRPC_URL"]
    _check_tcp(url, "the collector")
    return url


@pytest.fixture(scope="session")
def collector_factory(request: pytest.FixtureRequest, es_url: str) -> Iterator[Callable[..., CollectorEndpoints]]:
    """start(name, env=None, configs=()) -> CollectorEndpoints: one more collector on free
    ports, exporting into the test Elasticsearch, with `env` for its config's variables
    (e.g. sampling thresholds) and `configs` overlaid on config.yaml. One instance per
    name: asked again with the same settings it is reused, with others restarted. All
    are stopped at the end of the session."""
    started: dict[str, tuple[tuple, CollectorEndpoints, servers.Collector]] = {}

    def start(name: str, env: Mapping[str, str] | None = None, configs: Sequence[Path] = ()) -> CollectorEndpoints:
        wanted = (tuple(sorted((env or {}).items())), tuple(map(str, configs)))
        if name in started and started[name][0] == wanted:
            return started[name][1]
        ports = [_free_port() for _ in range(3)]
        collector = servers.Collector(
            name=name, grpc_endpoint=f"{servers.HOST}:{ports[0]}", http_endpoint=f"{servers.HOST}:{ports[1]}",
            health_endpoint=f"{servers.HOST}:{ports[2]}", es_url=es_url, env=dict(env or {}),
            configs=tuple(Path(c) for c in configs),
        )
        exports = _start(request, collector)
        endpoints = CollectorEndpoints(name, exports["WWTS_OTLP_GRPC_URL"], exports["OTEL_EXPORTER_OTLP_ENDPOINT"],
                                       Path(exports["WWTS_OTELCOL_FILE"]), Path(exports["WWTS_OTELCOL_LOG"]))
        started[name] = (wanted, endpoints, collector)
        return endpoints

    yield start
    for _, _, collector in started.values():
        servers.down(collector)


@pytest.fixture(scope="session")
def es_secure(request: pytest.FixtureRequest) -> SecureNode:
    """The node with security on: the superuser's password accepted, a wrong one refused."""
    from elasticsearch import AuthenticationException, Elasticsearch

    url = os.environ.get("WWTS_TEST_ES_SECURE_URL")
    if url:
        env = os.environ
        node = SecureNode(url, env.get("WWTS_TEST_ES_SECURE_USER") or servers.SECURE_USER,
                          env.get("WWTS_TEST_ES_SECURE_PASSWORD") or servers.SECURE_PASSWORD,
                          env.get("WWTS_TEST_ES_NOPRIV_USER") or servers.NOPRIV_USER,
                          env.get("WWTS_TEST_ES_NOPRIV_PASSWORD") or servers.NOPRIV_PASSWORD)
    else:
        server = servers.es_from_env(secure=True)
        superuser, nopriv = server.users
        url = _start(request, server)["WWTS_TEST_ES_SECURE_URL"]
        node = SecureNode(url, superuser.name, superuser.password, nopriv.name, nopriv.password)
    _check_es(url, basic_auth=(node.user, node.password))
    try:
        Elasticsearch(url, basic_auth=(node.user, "not-" + node.password), request_timeout=5).cluster.health()
    except AuthenticationException:
        pass
    else:
        pytest.fail(f"Elasticsearch at {url} accepts a wrong password: security is off on that node", pytrace=False)
    return node


@pytest.fixture(scope="session")
def es_secure_client(es_secure: SecureNode):
    """A client of the secured node, as its superuser."""
    from elasticsearch import Elasticsearch

    return Elasticsearch(es_secure.url, basic_auth=(es_secure.user, es_secure.password), request_timeout=30)


@pytest.fixture(scope="session")
def jaeger(request: pytest.FixtureRequest) -> JaegerEndpoints:
    otlp, query = os.environ.get("WWTS_TEST_JAEGER_OTLP_ENDPOINT"), os.environ.get("WWTS_TEST_JAEGER_QUERY_URL")
    if not (otlp and query):
        exports = _start(request, servers.jaeger_from_env())
        otlp, query = f"http://{exports['WWTS_JAEGER_OTLP_ENDPOINT']}", exports["WWTS_JAEGER_QUERY_URL"]
    _check_tcp(otlp, "Jaeger's OTLP receiver")
    _check_tcp(query, "Jaeger's query API")
    return JaegerEndpoints(otlp, urllib.parse.urlparse(otlp).netloc, query.rstrip("/"))
