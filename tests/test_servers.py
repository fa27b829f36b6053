"""deploy/servers.py: the branches that need no server (config and users files, the password
hash, fingerprints, pid checks against /proc, busy ports, build folders, download checks),
then the real life cycle (a second `up` reuses, `status` answers, `down` stops) and the
collector -> Jaeger path."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest

from deploy import servers
from tests.backends import CollectorEndpoints, JaegerEndpoints

USERS = (servers.EsUser("alice", "alice-password", "superuser"),
         servers.EsUser("bob", "bob-password", "wwts_monitor_only"))


# -- Elasticsearch config and users ---------------------------------------------------------


def test_es_yml_is_a_loopback_single_node_with_security_only_when_asked(tmp_path: Path) -> None:
    plain = servers.es_yml(tmp_path, 9250, security=False).splitlines()
    assert "http.port: 9250" in plain and "transport.port: 9350" in plain
    assert f"path.data: {tmp_path}/data" in plain and "network.host: 127.0.0.1" in plain
    assert "discovery.type: single-node" in plain and "xpack.security.enabled: false" in plain
    assert "cluster.name: wwts-local-9250" in plain
    assert not any("ssl" in line for line in plain)
    secure = servers.es_yml(tmp_path, 9260, security=True).splitlines()
    assert "xpack.security.enabled: true" in secure
    assert {"xpack.security.http.ssl.enabled: false", "xpack.security.transport.ssl.enabled: false"} <= set(secure)


def test_the_password_hash_is_elasticsearchs_pbkdf2_format() -> None:
    stored = servers.pbkdf2_hash("s3cret-password")
    prefix, salt, key = stored.split("$")
    assert prefix == "{PBKDF2}10000"
    assert len(base64.b64decode(salt)) == 32 and len(base64.b64decode(key)) == 32
    # Hasher.PBKDF2: PBKDF2WithHmacSHA512 over the UTF-8 password, 10000 rounds, 256 bits
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret-password", base64.b64decode(salt), 10000, 32)
    assert base64.b64decode(key) == expected
    assert servers.pbkdf2_verify("s3cret-password", stored)
    assert not servers.pbkdf2_verify("s3cret-passwore", stored)
    assert not servers.pbkdf2_verify("s3cret-password", "$2a$10$bcryptbcryptbcryptbcrypt")


def test_a_fixed_salt_gives_a_fixed_hash() -> None:
    assert servers.pbkdf2_hash("password", salt=b"\0" * 32) == servers.pbkdf2_hash("password", salt=b"\0" * 32)
    assert servers.pbkdf2_hash("password", salt=b"\0" * 32) != servers.pbkdf2_hash("password", salt=b"\1" * 32)


def test_users_files_keep_verified_hashes_and_never_hold_a_password() -> None:
    first = servers.users_file(USERS)
    assert [line.split(":")[0] for line in first.splitlines()] == ["alice", "bob"]
    assert "alice-password" not in first and "bob-password" not in first
    assert servers.users_file(USERS, existing=first) == first  # same settings on the next `up`
    changed = (USERS[0], servers.EsUser("bob", "another-password", "wwts_monitor_only"))
    assert servers.users_file(changed, existing=first) != first
    assert servers.users_file(USERS[:1], existing=first).count("\n") == 1  # bob removed
    assert servers.users_roles_file(USERS) == "superuser:alice\nwwts_monitor_only:bob\n"
    assert "wwts_monitor_only:\n  cluster: [ \"monitor\" ]" in servers.roles_file()


@pytest.mark.parametrize("users, problem", [
    ((servers.EsUser("a", "short", "superuser"),), "at least 6"),
    ((servers.EsUser("a", "long-enough", "superuser"), servers.EsUser("a", "long-enough", "x")), "must differ"),
    ((servers.EsUser("a:b", "long-enough", "superuser"),), "not a valid"),
])
def test_bad_users_are_refused(users, problem: str) -> None:
    with pytest.raises(servers.ServerError, match=problem):
        servers.check_users(users)


def test_the_node_fingerprint_follows_its_settings_without_showing_secrets(tmp_path: Path) -> None:
    def node(**fields) -> servers.Elasticsearch:
        return servers.Elasticsearch(run_root=tmp_path, java_home=tmp_path / "jdk", cache=tmp_path, **fields)

    assert node(port=9250).settings() == node(port=9250).settings()
    assert node(port=9250).settings() != node(port=9251).settings()
    assert node(port=9250).settings() != node(port=9250, java_opts="-Xmx1g").settings()
    assert node(port=9250).settings() != node(port=9250, users=USERS).settings()
    secure = node(port=9250, users=USERS)
    (tmp_path / "node-9250" / "config").mkdir(parents=True)
    (tmp_path / "node-9250" / "config" / "users").write_text(secure.files["users"])
    assert node(port=9250, users=USERS).settings() == secure.settings()  # hashes verified, kept
    assert "alice-password" not in json.dumps(secure.files | {"fp": secure.settings()})


def test_collector_fingerprint_covers_credentials_by_digest_only(tmp_path: Path) -> None:
    def collector(**fields) -> servers.Collector:
        return servers.Collector(grpc_endpoint="127.0.0.1:4517", cache=tmp_path, **fields)

    basic = servers.EsAuth(username="elastic", password="pw-one")
    assert collector(es_auth=basic).settings() == collector(es_auth=basic).settings()
    other = servers.EsAuth(username="elastic", password="pw-two")
    assert collector(es_auth=basic).settings() != collector(es_auth=other).settings()
    assert collector().settings() != collector(env={"WWTS_TAIL_MS": "500"}).settings()
    assert "pw-one" not in collector(es_auth=basic).settings()


def test_the_command_line_passes_the_configs_other_variables_through(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("processors:\n  x:\n    wait: ${env:WWTS_TEST_OVERLAY_WAIT:-1s}\n")
    env = {"WWTS_TEST_OVERLAY_WAIT": "5s", "WWTS_ES_PASSWORD": "pw", "UNRELATED": "x",
           "WWTS_OTELCOL_CONFIGS": str(overlay), "WWTS_CACHE": str(tmp_path)}
    collector = servers.collector_from_env(env)
    assert collector.env == {"WWTS_TEST_OVERLAY_WAIT": "5s"}  # credentials go through EsAuth only
    assert "WWTS_OTLP_GRPC_ENDPOINT" in servers.config_env_names([servers.COLLECTOR_CONFIG])


def test_one_helper_chooses_api_key_over_basic_auth() -> None:
    both = servers.EsAuth.from_env({"WWTS_ES_API_KEY": "a2V5", "WWTS_ES_USERNAME": "u", "WWTS_ES_PASSWORD": "p"})
    assert both.header() == {"Authorization": "ApiKey a2V5"} and both.env() == {"WWTS_ES_API_KEY": "a2V5"}
    basic = servers.EsAuth.from_env({"WWTS_ES_USERNAME": "u", "WWTS_ES_PASSWORD": "p"})
    assert basic.header() == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert basic.env() == {"WWTS_ES_USERNAME": "u", "WWTS_ES_PASSWORD": "p"}
    assert servers.EsAuth.from_env({}).header() == {} and servers.EsAuth.from_env({}).env() == {}


def test_a_collector_gets_credentials_in_its_environment_never_its_command_line(tmp_path: Path) -> None:
    collector = servers.Collector(es_auth=servers.EsAuth(username="elastic", password="pw-secret"), cache=tmp_path)
    assert "pw-secret" not in " ".join(collector.argv())
    assert collector.server_vars()["WWTS_ES_PASSWORD"] == "pw-secret"
    assert "OTHER_SECRET" not in servers.server_env(collector.server_vars(), env={"OTHER_SECRET": "x", "PATH": "/bin"})


def test_java_is_found_by_its_release_file(tmp_path: Path) -> None:
    for name, version in [("jdk-17", "17.0.2"), ("jdk-25", "25.0.1"), ("jdk-21", "21.0.5")]:
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / "java").touch()
        (tmp_path / name / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    assert servers.find_java(env={}, jvm_dir=tmp_path) == tmp_path / "jdk-25"
    with pytest.raises(servers.ServerError, match="not a JDK >= 21"):
        servers.find_java(env={"ES_JAVA_HOME": str(tmp_path / "jdk-17")}, jvm_dir=tmp_path)
    with pytest.raises(servers.ServerError, match="no JDK >= 21"):
        servers.find_java(env={}, jvm_dir=tmp_path / "jdk-17")


def test_a_private_home_is_not_traversable_by_the_node_user() -> None:
    root = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp_path sits in a private dir
    private = root / "home"
    try:
        root.chmod(0o755)
        (private / "cache").mkdir(parents=True)
        private.chmod(0o700)
        assert not servers.traversable_by(private / "cache", uid=None, gid=None)
        assert servers.traversable_by(private / "cache", uid=os.getuid(), gid=None)
        private.chmod(0o711)
        assert servers.traversable_by(private / "cache", uid=None, gid=None)
    finally:
        shutil.rmtree(root)


# -- processes and ports ------------------------------------------------------------------


@pytest.fixture
def marked_sleeper():
    """A live process that looks like a server of ours: `sleep` with a marker in its env."""
    process = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], "WWTS_SERVER": "test-key"})
    time.sleep(0.1)
    yield process
    process.kill()
    process.wait()


def test_a_pid_file_counts_only_when_proc_shows_our_process(tmp_path: Path, marked_sleeper) -> None:
    pid_file = tmp_path / "server.pid"
    ours = servers.Identity(("sleep",), "60", (("WWTS_SERVER", "test-key"),))
    assert servers.our_pid(pid_file, ours) is None  # no pid file
    pid_file.write_text("garbage\n")
    assert servers.our_pid(pid_file, ours) is None
    pid_file.write_text(f"{marked_sleeper.pid}\n")
    assert servers.our_pid(pid_file, ours) == marked_sleeper.pid
    assert servers.our_pid(pid_file, servers.Identity(("sleep",), "", (("WWTS_SERVER", "other"),))) is None
    assert servers.our_pid(pid_file, servers.Identity(("java",), "", ())) is None
    assert servers.our_pid(pid_file, servers.Identity(("sleep",), "org.elasticsearch", ())) is None
    pid_file.write_text(f"{os.getpid()}\n")  # a live process, but not that one
    assert servers.our_pid(pid_file, ours) is None
    marked_sleeper.kill()
    marked_sleeper.wait()
    pid_file.write_text(f"{marked_sleeper.pid}\n")  # gone (pid numbers are not reused this fast)
    assert servers.our_pid(pid_file, ours) is None


def test_a_fake_proc_tree_is_read_like_the_real_one(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "exe").symlink_to("/opt/wwts/wwts-otelcol (deleted)")
    (proc / "4242" / "cmdline").write_bytes(b"/opt/wwts/wwts-otelcol\0--config\0x.yaml\0")
    (proc / "4242" / "environ").write_bytes(b"A=1\0WWTS_OTLP_GRPC_ENDPOINT=127.0.0.1:4317\0")
    pid_file = tmp_path / "collector.pid"
    pid_file.write_text("4242")
    identity = servers.Identity(("wwts-otelcol",), "--config x.yaml", (("WWTS_OTLP_GRPC_ENDPOINT", "127.0.0.1:4317"),))
    assert servers.our_pid(pid_file, identity, proc=proc) == 4242  # a replaced binary still counts
    other_port = servers.Identity(("wwts-otelcol",), "", (("WWTS_OTLP_GRPC_ENDPOINT", "127.0.0.1:4517"),))
    assert servers.our_pid(pid_file, other_port, proc=proc) is None
    other_config = servers.Identity(("wwts-otelcol",), "--config /elsewhere/config.yaml")
    assert servers.our_pid(pid_file, other_config, proc=proc) is None


@dataclasses.dataclass
class _Starting(servers.Server):
    """A launched process whose /proc identity does not (yet) match, answering after `polls`."""

    pid_path: Path
    polls: int = 3
    label = "test server"

    def pid_file(self) -> Path:
        return self.pid_path

    def identity(self) -> servers.Identity:
        return servers.Identity(("sleep",), "never in its cmdline")

    def healthy(self) -> bool:
        self.polls -= 1
        return self.polls < 0


def test_start_up_waits_on_a_live_pid_even_while_proc_shows_no_identity(tmp_path: Path, marked_sleeper) -> None:
    """Right after exec the kernel shows an empty cmdline for a moment: only a pid that is
    gone means the server exited."""
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{marked_sleeper.pid}\n")
    starting = _Starting(pid_file)
    assert starting.pid() is None
    servers.wait_ready(starting)
    assert starting.polls < 0
    marked_sleeper.kill()
    marked_sleeper.wait()
    with pytest.raises(servers.ServerError, match="test server exited during start-up"):
        servers.wait_ready(_Starting(pid_file))


def test_stop_pid_ends_the_process(marked_sleeper) -> None:
    servers.stop_pid(marked_sleeper.pid, timeout_s=5)
    assert marked_sleeper.wait(timeout=5) == -15


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_a_port_held_by_something_else_is_refused_before_anything_is_built(tmp_path: Path, listener: int) -> None:
    assert not servers.port_free(f"127.0.0.1:{listener}")
    assert servers.port_holder(listener).startswith(f"pid {os.getpid()} ")
    jaeger = servers.Jaeger(otlp_grpc_endpoint=f"127.0.0.1:{listener}", query_endpoint="127.0.0.1:1", cache=tmp_path)
    with pytest.raises(servers.ServerError, match=f"127.0.0.1:{listener} is already in use by pid {os.getpid()}"):
        servers.up(jaeger)
    assert not servers.jaeger_build_dir(tmp_path).exists()


def test_a_free_port_is_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert servers.port_free(f"127.0.0.1:{port}")


def test_endpoints_derive_their_companion_ports() -> None:
    collector = servers.Collector(grpc_endpoint="127.0.0.1:4517")
    assert collector.name == "4517"
    assert (collector.http_endpoint, collector.health_endpoint) == ("127.0.0.1:4518", "127.0.0.1:13333")
    assert servers.Collector().health_endpoint == "127.0.0.1:13133"
    jaeger = servers.Jaeger()
    assert jaeger.listen() == ("127.0.0.1:14317", "127.0.0.1:14318", "127.0.0.1:16686", "127.0.0.1:16685")
    assert servers.connect_endpoint("0.0.0.0:4317") == ("127.0.0.1", 4317)
    with pytest.raises(servers.ServerError, match="not host:port"):
        servers.Collector(grpc_endpoint="4317")


def test_a_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / ".x.lock"
    holder = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
              "print('held', flush=True); time.sleep(1.0)")
    process = subprocess.Popen([sys.executable, "-c", holder, str(lock)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    with pytest.raises(servers.ServerError, match="timed out"), servers.locked(lock, timeout_s=0.3):
        pass
    started = time.monotonic()
    with servers.locked(lock, timeout_s=10):
        assert time.monotonic() - started > 0.3
    process.wait()


# -- builds and downloads -----------------------------------------------------------------


def test_the_build_folder_follows_the_manifest_content(tmp_path: Path) -> None:
    text = servers.MANIFEST.read_text()
    first = servers.collector_build_dir(tmp_path, text)
    assert first.parent == tmp_path / "otelcol" and len(first.name) == len("build-") + 16
    assert servers.collector_build_dir(tmp_path, text) == first
    assert servers.collector_build_dir(tmp_path, text + "\n# changed\n") != first
    assert servers.ocb_version(text) == "v0.157.0"
    modules = servers.manifest_modules(text)
    contrib = "github.com/open-telemetry/opentelemetry-collector-contrib"
    assert modules[f"{contrib}/processor/tailsamplingprocessor"] == "v0.157.0"
    with pytest.raises(servers.ServerError, match="builder version"):
        servers.ocb_version("receivers: []\n")


def test_a_finished_build_is_reused_and_a_failed_one_leaves_no_cache(tmp_path: Path) -> None:
    calls = []

    def steps(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "tool").write_text("#!/bin/sh\n")

    out = tmp_path / "build-x"
    assert servers.cached_build(out, "tool", "tool", steps) == out / "tool"
    assert servers.cached_build(out, "tool", "tool", steps) == out / "tool"
    assert len(calls) == 1 and not calls[0].exists()

    def failing(tmp: Path) -> None:
        raise servers.ServerError("compile error")

    with pytest.raises(servers.ServerError, match="compile error"):
        servers.cached_build(tmp_path / "build-y", "tool", "tool", failing)
    assert not (tmp_path / "build-y").exists()


def test_the_jaeger_wrapper_module_is_pinned() -> None:
    assert "go 1.25" in servers.JAEGER_GO_MOD and servers.JAEGER_VERSION == "v1.76.0"
    assert servers.jaeger_build_dir(Path("/c")).parent == Path("/c/jaeger")


def fake_repo(root: Path, payload: bytes, sha1: str | None) -> str:
    """A Maven-layout folder with the distribution zip (and its .sha1 when given)."""
    target = root / servers.maven_path("0.0.1")
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    if sha1 is not None:
        Path(f"{target}.sha1").write_text(sha1 + "\n")
    return root.as_uri()


def zip_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "made.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("elasticsearch-0.0.1/bin/elasticsearch", "#!/bin/sh\n")
    return path.read_bytes()


def test_a_download_is_kept_only_when_its_checksum_matches(tmp_path: Path) -> None:
    payload = zip_bytes(tmp_path)
    good = fake_repo(tmp_path / "good", payload, hashlib.sha1(payload).hexdigest())
    path = servers.fetch_es_zip(tmp_path / "cache", "0.0.1", repo=good, mvn=None)
    assert path.read_bytes() == payload
    bad = fake_repo(tmp_path / "bad", payload, "0" * 40)
    with pytest.raises(servers.ServerError, match=r"sha1 \w+ is not the published"):
        servers.fetch_es_zip(tmp_path / "cache2", "0.0.1", repo=bad, mvn=None)
    assert list((tmp_path / "cache2").iterdir()) == []  # nothing half-written left behind
    pinned = fake_repo(tmp_path / "pinned", payload, None)
    with pytest.raises(servers.ServerError, match="not the pinned"):
        servers.fetch_es_zip(tmp_path / "cache3", "0.0.1", repo=pinned, sha256="f" * 64, mvn=None)
    digest = hashlib.sha256(payload).hexdigest()
    ok = servers.fetch_es_zip(tmp_path / "cache3", "0.0.1", repo=pinned, sha256=digest, mvn=None)
    assert ok.is_file()


def test_without_any_checksum_a_corrupt_zip_is_refused(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo", b"PK\3\4 not really a zip", None)
    with pytest.raises(servers.ServerError, match="not a zip"):
        servers.fetch_es_zip(tmp_path / "cache", "0.0.1", repo=repo, sha256="", mvn=None)


def test_unpack_makes_the_scripts_executable(tmp_path: Path) -> None:
    (tmp_path / "d.zip").write_bytes(zip_bytes(tmp_path))
    home = servers.unpack(tmp_path / "d.zip", tmp_path, "elasticsearch-0.0.1")
    assert os.access(home / "bin" / "elasticsearch", os.X_OK) and (home / ".wwts-unpacked").is_file()
    assert servers.unpack(tmp_path / "d.zip", tmp_path, "elasticsearch-0.0.1") == home


def test_the_command_line_prints_urls_and_refuses_unknown_targets(capsys) -> None:
    assert servers.main(["url", "es", "jaeger"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"WWTS_ES_URL=http://127.0.0.1:{os.environ.get('WWTS_ES_PORT', servers.ES_PORT)}"
    assert any(line.startswith("WWTS_JAEGER_QUERY_URL=") for line in out)
    assert servers.main(["up", "kibana"]) == 1
    assert "unknown target 'kibana'" in capsys.readouterr().err


# -- the real life cycle ------------------------------------------------------------------


def free_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.integration
def test_up_twice_reuses_the_running_collector_and_status_answers(tmp_path: Path, es_url: str) -> None:
    collector = servers.Collector(name="test-servers-reuse", grpc_endpoint=free_endpoint(),
                                  http_endpoint=free_endpoint(), health_endpoint=free_endpoint(),
                                  es_url=es_url, traces_file=tmp_path / "traces.jsonl")
    try:
        first = servers.up(collector)
        pid = collector.pid()
        assert pid is not None and first["WWTS_OTELCOL_PID"] == str(pid)
        started = time.monotonic()
        assert servers.up(collector)["WWTS_OTELCOL_PID"] == str(pid)  # reused, not restarted
        assert time.monotonic() - started < 5
        assert servers.status(collector)
        restarted = servers.up(dataclasses.replace(collector, env={"WWTS_UNUSED": "1"}))
        assert restarted["WWTS_OTELCOL_PID"] != str(pid)  # other settings: restarted
        assert not servers.alive(pid)
    finally:
        assert servers.down(collector)
    assert not servers.status(collector)
    assert not servers.down(collector)


def post_span(otlp_http_endpoint: str, trace_id: str) -> None:
    now = time.time_ns()
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "wwts-test-servers"}}]},
        "scopeSpans": [{"scope": {"name": "tests"}, "spans": [{
            "traceId": trace_id, "spanId": trace_id[:16], "name": "wwts.classify", "kind": 1,
            "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now)}]}]}]}
    request = urllib.request.Request(f"{otlp_http_endpoint}/v1/traces", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def trace_from_jaeger(query_url: str, trace_id: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body, _ = servers.http("GET", f"{query_url}/api/traces/{trace_id}", timeout_s=5)
        if status == 200 and json.loads(body).get("data"):
            return json.loads(body)["data"][0]
        assert time.monotonic() < deadline, f"trace {trace_id} not in Jaeger: HTTP {status} {body[:300]!r}"
        time.sleep(0.5)


@pytest.mark.integration
def test_a_span_reaches_jaeger_through_a_collector_with_the_jaeger_overlay(jaeger: JaegerEndpoints,
                                                                           collector_factory) -> None:
    collector: CollectorEndpoints = collector_factory(
        "jaeger", env={"WWTS_JAEGER_OTLP_ENDPOINT": jaeger.collector_endpoint},
        configs=[servers.COLLECTOR_DIR / "config.jaeger.yaml"],
    )
    trace_id = uuid.uuid4().hex
    post_span(collector.otlp_http_endpoint, trace_id)
    trace = trace_from_jaeger(jaeger.query_url, trace_id)
    assert [span["operationName"] for span in trace["spans"]] == ["wwts.classify"]
    status, body, _ = servers.http("GET", f"{jaeger.query_url}/api/v3/traces/{trace_id}", timeout_s=5)
    assert status == 200 and trace_id in body.decode()
