"""Local servers for development and tests, without Docker: Elasticsearch (plain and with
security on), the wwts OpenTelemetry Collector and Jaeger v2.

Each is fetched or built once into a cache (`$WWTS_CACHE`, default ~/.cache/wwts), started
in the background in its own session, health-checked with a bounded wait (log tails on
failure), reused when it already runs with the same settings, restarted when its settings
changed, and stopped by the pid it recorded, after /proc confirms the pid is still that
server. One lock per instance serialises concurrent `up`/`down` calls. Secrets travel
through environments and files, never through a command line.

Standard library only, so it runs with a bare `python3` before any virtual environment
exists (`make test` builds the Go servers while pip installs).

    python3 -m deploy.servers up     es|es-secure|collector|jaeger|all ...
    python3 -m deploy.servers down   es|es-secure|collector|jaeger|all ...
    python3 -m deploy.servers status es|es-secure|collector|jaeger|all ...
    python3 -m deploy.servers url    es|es-secure|collector|jaeger|all ...
    python3 -m deploy.servers build  es|collector|jaeger|all ...

`up` prints shell assignments on stdout (`eval "$(python3 -m deploy.servers up es)"`);
progress goes to stderr. Knobs are environment variables, read by the `*_from_env`
functions below and listed in deploy/elk/local/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import hmac
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ELK = HERE / "elk"
HOST = "127.0.0.1"

# marks in a started server's environment: which instance it is and with what settings
MARK_VAR = "WWTS_SERVER"
SETTINGS_VAR = "WWTS_SERVER_SETTINGS"
# what a server's environment keeps from ours (nothing else: no stray credentials)
PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR",
                "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
LOCK_TIMEOUT_S = 900
TAIL_LINES = 40

# -- Elasticsearch ------------------------------------------------------------------------
ES_VERSION = "9.5.4"  # the newest 9.x integ-test-zip Maven Central serves
# sha256 of Maven Central's zip: the mirror here serves no .sha1/.sha256 next to it
ES_ZIP_SHA256 = {"9.5.4": "d9b0c28e08e499f6510b52ad66ec4bf9cdceab97cc28b3456989b8744b896934"}
ES_GROUP, ES_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip", "elasticsearch"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"
ES_PORT, ES_SECURE_PORT = 9200, 9210
ES_TRANSPORT_OFFSET = 100  # transport port = HTTP port + 100
ES_NODE_USER = "wwts-es"   # Elasticsearch refuses root: as root the node runs as this user
ES_ROOT_RUN_DIR = Path("/var/lib/wwts-es")  # when that user cannot reach the cache
ES_JAVA_OPTS = "-Xms512m -Xmx512m"
ES_MIN_JAVA = 21
JVM_DIR = Path("/usr/lib/jvm")
ES_TIMEOUT_S = 120.0
ES_STOP_TIMEOUT_S = 60.0
ES_MAIN_CLASS = "org.elasticsearch.bootstrap.Elasticsearch"
SECURE_USER, SECURE_PASSWORD = "wwts-test", "wwts-test-password"
NOPRIV_USER, NOPRIV_PASSWORD = "wwts-nopriv", "wwts-nopriv-password"
NOPRIV_ROLE = "wwts_monitor_only"  # cluster `monitor` only: health 200, every write 403
MIN_PASSWORD = 6                   # the file realm's own minimum
PBKDF2_COST = 10000                # Elasticsearch's default PBKDF2 cost ({PBKDF2}10000$...)

# -- OpenTelemetry Collector --------------------------------------------------------------
COLLECTOR_DIR = ELK / "otel-collector"
MANIFEST = COLLECTOR_DIR / "manifest.yaml"
COLLECTOR_CONFIG = COLLECTOR_DIR / "config.yaml"
TRACES_TEMPLATE = ELK / "traces-template.json"
TRACES_TEMPLATE_NAME = "wwts-traces"
COLLECTOR_BIN = "wwts-otelcol"
OCB_MODULE = "go.opentelemetry.io/collector/cmd/builder"
OCB_VERSION_OF = "go.opentelemetry.io/collector/receiver/otlpreceiver"  # builder = core version
GONOSUMDB_MODULES = "go.opentelemetry.io/ebpf-profiler"  # no checksum-DB entry (manifest.yaml)
OTLP_GRPC_PORT = 4317
HEALTH_OFFSET = 8816  # health_check port = gRPC port + 8816 (13133 for 4317)
COLLECTOR_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# -- Jaeger v2 ----------------------------------------------------------------------------
# The Go proxy serves github.com/jaegertracing/jaeger up to v1.76.0, the commit of Jaeger
# v2.13.0 (later v2 tags are not served: the module path has no /v2). It builds only as a
# tool of a small wrapper module; the binary has no UI assets, the query API works.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.76.0"
JAEGER_TOOL = f"{JAEGER_MODULE}/cmd/jaeger"
JAEGER_GO_MOD = "module wwts.local/jaeger\n\ngo 1.25\n"
JAEGER_BIN = "jaeger"
JAEGER_CONFIG = ELK / "jaeger" / "config.yaml"
JAEGER_OTLP_GRPC_PORT = 14317  # what config.jaeger.yaml sends to by default
JAEGER_QUERY_PORT = 16686      # query gRPC on this port - 1
JAEGER_TIMEOUT_S = 60.0
GO_BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")


class ServerError(RuntimeError):
    """A server could not be had: the message says why and what to do."""


def log(message: str) -> None:
    print(f"servers: {message}", file=sys.stderr, flush=True)


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("WWTS_CACHE") or Path.home() / ".cache" / "wwts")


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ServerError(f"{name}={value!r} is not a number of seconds") from None


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.isdigit():
        raise ServerError(f"{name}={value!r} is not a port number")
    return int(value)


def is_root() -> bool:
    return os.geteuid() == 0


def digest(*parts: object, length: int = 16) -> str:
    """A short hex fingerprint of the parts, e.g. of a server's settings."""
    text = "\0".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def secret_digest(*secrets_: str) -> str:
    """A fingerprint of secrets that is no cheaper to invert than the file realm's hashes."""
    joined = "\0".join(secrets_).encode()
    return hashlib.pbkdf2_hmac("sha256", joined, b"wwts-servers", PBKDF2_COST).hex()[:16]


def server_env(extra: Mapping[str, str], env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A minimal environment for a server: a few variables of ours, then `extra`."""
    base = {name: env[name] for name in PASS_THROUGH if name in env}
    base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    base.setdefault("LANG", "C.UTF-8")
    return {**base, **extra}


# -- processes ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
    """How /proc must show a pid for it to be ours; anything else is a stale pid file."""

    exe_names: tuple[str, ...]
    cmdline_has: str = ""
    environ: tuple[tuple[str, str], ...] = ()


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def proc_environ(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def proc_matches(pid: int, identity: Identity, proc: Path = Path("/proc")) -> bool:
    """Whether pid is alive (not a zombie) and is the process `identity` describes."""
    base = proc / str(pid)
    try:
        exe = os.readlink(base / "exe").removesuffix(" (deleted)")
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if Path(exe).name not in identity.exe_names or identity.cmdline_has not in cmdline:
        return False
    environ = proc_environ(pid, proc)
    return all(environ.get(key) == value for key, value in identity.environ)


def our_pid(pid_file: Path, identity: Identity, proc: Path = Path("/proc")) -> int | None:
    pid = read_pid(pid_file)
    return pid if pid is not None and proc_matches(pid, identity, proc) else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_pid(pid: int, timeout_s: float) -> None:
    """TERM, wait, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout_s):
        return
    log(f"pid {pid} ignored SIGTERM for {timeout_s:.0f} s; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_file: Path) -> int:
    """Start a long-lived server in its own session (a Ctrl-C or the end of the calling
    process leaves it running); a thread reaps it should it exit while we still run."""
    with open(log_file, "ab") as out:
        process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


@contextlib.contextmanager
def locked(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive flock on `path`, held for the block (closed, so never inherited)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline, said = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerError(f"timed out after {timeout_s:.0f} s waiting for the lock {path}") from None
                if not said:
                    log(f"waiting for {path} (another up/down/build holds it)")
                    said = True
                time.sleep(0.2)
        yield


def tails(paths: Sequence[Path], lines: int = TAIL_LINES) -> str:
    parts = []
    for path in paths:
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()
            if text:
                parts.append(f"----- tail of {path} -----\n" + "\n".join(text[-lines:]))
    return ("\n" + "\n".join(parts)) if parts else ""


# -- ports --------------------------------------------------------------------------------


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerError(f"{endpoint!r} is not host:port")
    return host or HOST, int(port)


def connect_endpoint(endpoint: str) -> tuple[str, int]:
    """Where to connect to reach a listen address (a wildcard is reached on loopback)."""
    host, port = split_endpoint(endpoint)
    return (HOST if host in ("0.0.0.0", "::", "[::]") else host.strip("[]")), port


def port_free(endpoint: str) -> bool:
    host, port = split_endpoint(endpoint)
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def accepts(endpoint: str, timeout_s: float = 2.0) -> bool:
    try:
        socket.create_connection(connect_endpoint(endpoint), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def port_holder(port: int, proc: Path = Path("/proc")) -> str:
    """Best effort: 'pid N (command)' of the process listening on `port`, or ''."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid_dir in proc.glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (pid_dir / "fd").iterdir()):
                command = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"pid {pid_dir.name} ({command.strip()[:120]})"
    return ""


def refuse_busy(endpoints: Sequence[str], what: str) -> None:
    for endpoint in endpoints:
        if not port_free(endpoint):
            holder = port_holder(split_endpoint(endpoint)[1]) or "another process"
            raise ServerError(f"{endpoint} is already in use by {holder}: {what} cannot start there; "
                              "stop that process or pick other ports (deploy/elk/local/README.md)")


# -- HTTP ---------------------------------------------------------------------------------


def http(method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None,
         timeout_s: float = 10.0, ca_file: str | None = None) -> tuple[int, bytes, str]:
    """(status, body, error): status 0 with the error when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    handlers: list[urllib.request.BaseHandler] = []
    if urllib.parse.urlparse(url).hostname in (HOST, "localhost", "::1"):
        handlers.append(urllib.request.ProxyHandler({}))  # never a proxy for loopback
    if ca_file:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout_s) as response:
            return response.status, response.read(), ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""
    except (OSError, ValueError) as exc:
        return 0, b"", str(getattr(exc, "reason", exc))


@dataclasses.dataclass(frozen=True)
class EsAuth:
    """Credentials for Elasticsearch: an API key wins over username + password (as in
    telemetry.elastic); they reach servers through their environment only."""

    api_key: str = ""
    username: str = ""
    password: str = ""
    ca_certs: str = ""

    VARS = ("WWTS_ES_API_KEY", "WWTS_ES_USERNAME", "WWTS_ES_PASSWORD", "WWTS_ES_CA_CERTS")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EsAuth:
        return cls(*(env.get(name, "") for name in cls.VARS))

    def header(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"ApiKey {self.api_key}"}
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def env(self) -> dict[str, str]:
        """The collector config's variables (empty = none sent)."""
        if self.api_key:
            return {"WWTS_ES_API_KEY": self.api_key}
        if self.username:
            return {"WWTS_ES_USERNAME": self.username, "WWTS_ES_PASSWORD": self.password}
        return {}

    def fingerprint(self) -> str:
        return secret_digest(self.api_key, self.username, self.password, self.ca_certs)


def es_health(url: str, auth: EsAuth = EsAuth(), wait: bool = False,
              timeout_s: float = 10.0) -> tuple[int, dict[str, object], str]:
    """GET _cluster/health (GET / answers 405 on the integ-test-zip: no rest-root module)."""
    query = "?wait_for_status=yellow&timeout=5s" if wait else ""
    status, body, error = http("GET", f"{url.rstrip('/')}/_cluster/health{query}", auth.header(),
                               timeout_s=timeout_s, ca_file=auth.ca_certs or None)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {}, error


def install_traces_template(url: str, auth: EsAuth) -> None:
    """PUT the composable template the collector's `wwts-traces` index needs."""
    status, _, error = es_health(url, auth)
    if status == 0:
        raise ServerError(f"Elasticsearch at {url} is unreachable ({error or 'no answer'}); start it "
                          "(python3 -m deploy.servers up es) or fix WWTS_ES_URL")
    if status != 200:
        raise ServerError(f"Elasticsearch at {url} answered HTTP {status} (credentials? "
                          "WWTS_ES_API_KEY / WWTS_ES_USERNAME + WWTS_ES_PASSWORD)")
    status, body, error = http("PUT", f"{url.rstrip('/')}/_index_template/{TRACES_TEMPLATE_NAME}",
                               {**auth.header(), "Content-Type": "application/json"},
                               TRACES_TEMPLATE.read_bytes(), timeout_s=30, ca_file=auth.ca_certs or None)
    if status != 200:
        raise ServerError(f"installing the index template {TRACES_TEMPLATE_NAME} into {url} failed "
                          f"(HTTP {status}): {body[:2000].decode(errors='replace') or error}")
    log(f"index template {TRACES_TEMPLATE_NAME} installed into {url}")


# -- the generic life cycle ---------------------------------------------------------------


class Server:
    """One instance of a local server. Subclasses say where it lives, how to start it,
    how to recognise it in /proc and how to tell it is ready."""

    timeout_s: float = COLLECTOR_TIMEOUT_S
    stop_timeout_s: float = STOP_TIMEOUT_S

    @property
    def label(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        raise NotImplementedError

    def run_dir(self) -> Path:
        raise NotImplementedError

    def pid_file(self) -> Path:
        raise NotImplementedError

    def identity(self) -> Identity:
        raise NotImplementedError

    def listen(self) -> tuple[str, ...]:
        """host:port addresses it binds (all must be free before it starts)."""
        raise NotImplementedError

    def settings(self) -> str:
        """Fingerprint of everything it runs with; another value means a restart."""
        raise NotImplementedError

    def precheck(self) -> None:
        """What must hold before it starts or is reused (e.g. its Elasticsearch answers)."""

    def prepare(self) -> None:
        """Fetch, build, write config: everything before the process starts."""

    def launch(self, marks: Mapping[str, str]) -> None:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def exports(self) -> dict[str, str]:
        raise NotImplementedError

    def logs(self) -> list[Path]:
        return []

    def lock_file(self) -> Path:
        run = self.run_dir()
        return run.parent / f".{run.name}.lock"

    def pid(self) -> int | None:
        return our_pid(self.pid_file(), self.identity())


def up(server: Server) -> dict[str, str]:
    """Start the server, or reuse it when it runs healthy with the same settings."""
    with locked(server.lock_file()):
        pid, settings = server.pid(), server.settings()
        if pid is not None:
            if proc_environ(pid).get(SETTINGS_VAR) == settings and server.healthy():
                server.precheck()
                log(f"{server.label}: already running (pid {pid})")
                return server.exports()
            log(f"{server.label}: pid {pid} runs with other settings or does not answer; restarting it")
            stop_pid(pid, server.stop_timeout_s)
        server.pid_file().unlink(missing_ok=True)
        refuse_busy(server.listen(), server.label)
        server.precheck()
        server.prepare()
        started = time.monotonic()
        server.launch({MARK_VAR: server.key, SETTINGS_VAR: settings})
        wait_ready(server)
        log(f"{server.label}: up in {time.monotonic() - started:.1f} s (pid {server.pid()})")
        return server.exports()


def wait_ready(server: Server) -> None:
    """Poll until healthy. The process just launched is judged by its pid being alive, not
    by its /proc identity: the kernel closes the exec pipe (Popen returns) before it sets
    up the new image's argv, so for a moment the cmdline of a live server reads empty."""
    deadline = time.monotonic() + server.timeout_s
    while not server.healthy():
        pid = read_pid(server.pid_file())
        if pid is None or not alive(pid):
            raise ServerError(f"{server.label} exited during start-up{tails(server.logs())}")
        if time.monotonic() > deadline:
            stop_pid(pid, server.stop_timeout_s)
            raise ServerError(f"{server.label} did not answer within {server.timeout_s:.0f} s{tails(server.logs())}")
        time.sleep(0.2)


def down(server: Server) -> bool:
    """Stop exactly the process this instance recorded; False when none ran."""
    if not server.run_dir().is_dir():
        log(f"{server.label}: not running")
        return False
    with locked(server.lock_file()):
        pid = server.pid()
        server_pid_file = server.pid_file()
        if pid is None:
            server_pid_file.unlink(missing_ok=True)
            log(f"{server.label}: not running")
            return False
        log(f"{server.label}: stopping pid {pid}")
        stop_pid(pid, server.stop_timeout_s)
        server_pid_file.unlink(missing_ok=True)
        return True


def status(server: Server) -> bool:
    pid = server.pid()
    if pid is not None and server.healthy():
        log(f"{server.label}: running (pid {pid})")
        return True
    log(f"{server.label}: " + (f"not answering (pid {pid})" if pid else "not running"))
    return False


# -- Elasticsearch ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EsUser:
    """A file-realm user of a node with security on."""

    name: str
    password: str
    role: str


def pbkdf2_hash(password: str, salt: bytes | None = None, cost: int = PBKDF2_COST) -> str:
    """The file realm's `{PBKDF2}<cost>$<salt b64>$<key b64>` (Hasher.PBKDF2: HMAC-SHA512,
    32-byte salt and key), written here so no password is ever an argument of a command."""
    salt = os.urandom(32) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, cost, dklen=32)
    return f"{{PBKDF2}}{cost}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def pbkdf2_verify(password: str, stored: str) -> bool:
    match = re.fullmatch(r"\{PBKDF2\}(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored)
    if not match:
        return False  # another hasher (e.g. bcrypt from elasticsearch-users): rewrite it
    cost, salt, key = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, cost, dklen=len(key)), key)


def users_file(users: Sequence[EsUser], existing: str = "") -> str:
    """`users` content: the existing file when it already verifies every password (so a
    later `up` keeps its settings), new hashes otherwise."""
    stored = dict(line.split(":", 1) for line in existing.splitlines() if ":" in line)
    if set(stored) == {user.name for user in users} and all(
        pbkdf2_verify(user.password, stored[user.name]) for user in users
    ):
        return existing
    return "".join(f"{user.name}:{pbkdf2_hash(user.password)}\n" for user in users)


def users_roles_file(users: Sequence[EsUser]) -> str:
    roles: dict[str, list[str]] = {}
    for user in users:
        roles.setdefault(user.role, []).append(user.name)
    return "".join(f"{role}:{','.join(names)}\n" for role, names in sorted(roles.items()))


def roles_file() -> str:
    return ("# generated by deploy/servers.py: may ask for cluster health, may write nothing\n"
            f"{NOPRIV_ROLE}:\n  cluster: [ \"monitor\" ]\n")


def check_users(users: Sequence[EsUser]) -> None:
    names = [user.name for user in users]
    if len(set(names)) != len(names):
        raise ServerError(f"file-realm user names must differ (got {', '.join(names)})")
    for user in users:
        if not re.fullmatch(r"[A-Za-z0-9_.@-][A-Za-z0-9_.@ -]*", user.name):
            raise ServerError(f"{user.name!r} is not a valid file-realm user name")
        if len(user.password) < MIN_PASSWORD:
            raise ServerError(f"the password of {user.name} needs at least {MIN_PASSWORD} characters")


def es_yml(node: Path, port: int, security: bool) -> str:
    """elasticsearch.yml of a throwaway node: one node, loopback only, no disk watermarks,
    wildcard deletes allowed (tests drop their indices), security only when asked."""
    lines = [
        "# generated by deploy/servers.py; rewritten on every start",
        f"cluster.name: wwts-local-{port}",
        "node.name: wwts-local",
        f"path.data: {node}/data",
        f"path.logs: {node}/logs",
        f"network.host: {HOST}",
        f"http.port: {port}",
        f"transport.port: {port + ES_TRANSPORT_OFFSET}",
        "discovery.type: single-node",
        f"xpack.security.enabled: {str(security).lower()}",
        "cluster.routing.allocation.disk.threshold_enabled: false",
        "action.destructive_requires_name: false",
        "action.auto_create_index: true",
    ]
    if security:  # authentication over plain HTTP on loopback; one node needs no transport TLS
        lines += ["xpack.security.http.ssl.enabled: false", "xpack.security.transport.ssl.enabled: false"]
    return "\n".join(lines) + "\n"


def jvm_options(node: Path) -> str:
    """GC logs and heap dumps inside the node dir (the distribution is read-only to it)."""
    return (f"-Xlog:disable\n-Xlog:all=warning:stderr:utctime,level,tags\n-XX:HeapDumpPath={node}/data\n"
            f"-XX:ErrorFile={node}/logs/hs_err_pid%p.log\n-XX:-AlwaysPreTouch\n")


def java_major(home: Path) -> int | None:
    """The major version of the JDK at `home`, from its `release` file."""
    if not (home / "bin" / "java").exists():
        return None
    with contextlib.suppress(OSError):
        match = re.search(r'^JAVA_VERSION="(\d+)', (home / "release").read_text(), re.M)
        if match:
            return int(match[1])
    return None


def find_java(env: Mapping[str, str] = os.environ, jvm_dir: Path = JVM_DIR) -> Path:
    if env.get("ES_JAVA_HOME"):
        home = Path(env["ES_JAVA_HOME"])
        if (java_major(home) or 0) < ES_MIN_JAVA:
            raise ServerError(f"ES_JAVA_HOME={home} is not a JDK >= {ES_MIN_JAVA} (Elasticsearch 9 needs it)")
        return home
    found = [(java_major(home) or 0, home) for home in sorted(jvm_dir.glob("*")) if not home.is_symlink()]
    best = max(found, default=(0, Path()))
    if best[0] < ES_MIN_JAVA:
        raise ServerError(f"no JDK >= {ES_MIN_JAVA} under {jvm_dir}; install one (e.g. Temurin 21/25) "
                          "or set ES_JAVA_HOME")
    return best[1]


def traversable_by(path: Path, uid: int | None, gid: int | None) -> bool:
    """Whether a user (None: one we know nothing of) can reach `path` through its parents."""
    for part in [path, *path.parents]:
        try:
            st = part.stat()
        except OSError:
            continue  # not there yet: created by us with mode 755
        if uid is not None and st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif gid is not None and st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def node_owner(user: str) -> tuple[int, int] | None:
    """(uid, gid) the node runs as when we are root; None when it runs as us."""
    if not is_root():
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid
    return None


def ensure_node_user(user: str) -> tuple[int, int] | None:
    if not is_root():
        return None
    owner = node_owner(user)
    if owner is None:
        log(f"creating the system user {user} (Elasticsearch refuses to run as root)")
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                 "--shell", "/usr/sbin/nologin", "--user-group", user],
                                capture_output=True, text=True, check=False)
        owner = node_owner(user)  # also fine when a parallel run created it first
        if owner is None:
            raise ServerError(f"could not create the user {user}: {result.stderr.strip()}")
    return owner


def chown_tree(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), *owner)
    os.lchown(path, *owner)


def maven_path(version: str) -> str:
    return f"{ES_GROUP.replace('.', '/')}/{ES_ARTIFACT}/{version}/{ES_ARTIFACT}-{version}.zip"


def download(url: str, target: Path, attempts: int = 3) -> tuple[str, str]:
    """Stream url into target; (sha1, sha256) of what arrived."""
    for attempt in range(1, attempts + 1):
        sha1, sha256 = hashlib.sha1(), hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
                while chunk := response.read(1 << 20):
                    sha1.update(chunk)
                    sha256.update(chunk)
                    out.write(chunk)
            return sha1.hexdigest(), sha256.hexdigest()
        except (OSError, ValueError) as exc:
            if attempt == attempts:
                raise ServerError(f"could not download {url}: {exc}") from None
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def published_sha1(url: str) -> str | None:
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(f"{url}.sha1", timeout=30) as response:
        text: str = response.read(200).decode(errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{40}", text[:40]):
            return text[:40]
    return None


def verify_zip(path: Path, sha1: str, sha256: str, want_sha1: str | None, want_sha256: str | None) -> None:
    """The pinned sha256, the published .sha1, or (neither known) the zip's own CRCs."""
    if want_sha256 and sha256 != want_sha256:
        raise ServerError(f"{path.name}: sha256 {sha256} is not the pinned {want_sha256}")
    if want_sha1 and sha1 != want_sha1:
        raise ServerError(f"{path.name}: sha1 {sha1} is not the published {want_sha1}")
    if not want_sha1 and not want_sha256:
        log(f"no checksum known for {path.name}; checking the zip's CRCs instead")
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as exc:
            raise ServerError(f"{path.name} is not a zip: {exc}") from None
        if bad:
            raise ServerError(f"{path.name} is corrupt (first bad member: {bad})")


def fetch_es_zip(dest: Path, version: str = ES_VERSION, repo: str = MAVEN_CENTRAL,
                 sha256: str | None = None, mvn: str | None = "mvn") -> Path:
    """The distribution zip, cached in `dest`: Maven Central over HTTPS (checked), else
    `mvn dependency:copy` (which also honours a mirror in ~/.m2/settings.xml)."""
    zip_path = dest / f"{ES_ARTIFACT}-{version}.zip"
    if zip_path.is_file() and zip_path.stat().st_size > 0:
        return zip_path
    dest.mkdir(parents=True, exist_ok=True)
    want_sha256 = sha256 if sha256 is not None else ES_ZIP_SHA256.get(version)
    url = f"{repo.rstrip('/')}/{maven_path(version)}"
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download.") as tmp:
        part = Path(tmp) / zip_path.name
        log(f"downloading {url}")
        try:
            sha1, sha = download(url, part)
            verify_zip(part, sha1, sha, published_sha1(url), want_sha256)
        except ServerError as exc:
            if not (mvn and shutil.which(mvn)):
                raise
            log(f"{exc}; trying {mvn} dependency:copy")
            part = maven_copy(mvn, version, Path(tmp) / "mvn")
            sha1, sha = file_digests(part)
            verify_zip(part, sha1, sha, None, want_sha256)
        part.replace(zip_path)
    return zip_path


def maven_copy(mvn: str, version: str, out: Path) -> Path:
    artifact = f"{ES_GROUP}:{ES_ARTIFACT}:{version}:zip"
    result = subprocess.run([mvn, "-B", "-q", "-Dstyle.color=never", MAVEN_DEPENDENCY_PLUGIN,
                             f"-Dartifact={artifact}", f"-DoutputDirectory={out}"],
                            capture_output=True, text=True, check=False)
    zip_path = out / f"{ES_ARTIFACT}-{version}.zip"
    if result.returncode != 0 or not zip_path.is_file():
        raise ServerError(f"maven could not fetch {artifact}:\n{(result.stdout + result.stderr)[-3000:]}")
    return zip_path


def file_digests(path: Path) -> tuple[str, str]:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()


def unpack(zip_path: Path, into: Path, top: str) -> Path:
    """Unpack once into `into/top` (readable by all, scripts executable); a marker file
    says the unpacking finished."""
    home = into / top
    if (home / ".wwts-unpacked").is_file():
        return home
    log(f"unpacking {zip_path.name} into {into}")
    shutil.rmtree(home, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=into, prefix=".unpack.") as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)  # zipfile drops absolute paths and '..'
            executable = {i.filename.rstrip("/") for i in archive.infolist() if (i.external_attr >> 16) & 0o111}
        if not (Path(tmp) / top).is_dir():
            raise ServerError(f"unexpected layout in {zip_path}: no {top}/")
        for path in Path(tmp).rglob("*"):
            relative = path.relative_to(tmp).as_posix()
            path.chmod(0o755 if path.is_dir() or relative in executable or "/bin/" in f"/{relative}" else 0o644)
        (Path(tmp) / top).chmod(0o755)
        (Path(tmp) / top).replace(home)
    (home / ".wwts-unpacked").touch()
    return home


@dataclasses.dataclass
class Elasticsearch(Server):
    """A single-node Elasticsearch (integ-test-zip) on loopback; with `users`, security on
    (plain HTTP) and those file-realm users."""

    port: int = ES_PORT
    users: tuple[EsUser, ...] = ()
    version: str = ES_VERSION
    java_opts: str = ES_JAVA_OPTS
    timeout_s: float = ES_TIMEOUT_S
    node_user: str = ES_NODE_USER
    run_root: Path | None = None  # None: the cache, or /var/lib/wwts-es (see run_dir)
    java_home: Path | None = None  # None: the newest JDK >= 21 under /usr/lib/jvm
    cache: Path = dataclasses.field(default_factory=cache_root)
    stop_timeout_s = ES_STOP_TIMEOUT_S

    @property
    def label(self) -> str:
        return f"Elasticsearch {self.version} on {self.url}" + (" (security on)" if self.users else "")

    @property
    def key(self) -> str:
        return f"es-{self.port}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def superuser(self) -> EsAuth:
        return EsAuth(username=self.users[0].name, password=self.users[0].password) if self.users else EsAuth()

    @functools.cached_property
    def root(self) -> Path:
        """Where the unpacked distribution and node dirs live: the cache, unless we are
        root and the node user cannot reach it (a cache under /root, mode 700)."""
        if self.run_root is not None:
            return self.run_root
        cache = self.cache / "es"
        if is_root() and not traversable_by(cache, *(node_owner(self.node_user) or (None, None))):
            return ES_ROOT_RUN_DIR
        return cache

    def run_dir(self) -> Path:
        return self.root / f"node-{self.port}"

    def pid_file(self) -> Path:
        return self.run_dir() / "es.pid"

    def lock_file(self) -> Path:
        return self.root / f".lock-{self.port}"

    def identity(self) -> Identity:
        return Identity(("java",), ES_MAIN_CLASS, (("ES_PATH_CONF", str(self.run_dir() / "config")),))

    def listen(self) -> tuple[str, ...]:
        return f"{HOST}:{self.port}", f"{HOST}:{self.port + ES_TRANSPORT_OFFSET}"

    def logs(self) -> list[Path]:
        logs = self.run_dir() / "logs"
        return [logs / "startup.out", logs / f"wwts-local-{self.port}.log"]

    @functools.cached_property
    def files(self) -> dict[str, str]:
        """The node's generated config files (relative to config/), users included."""
        node = self.run_dir()
        files = {"elasticsearch.yml": es_yml(node, self.port, bool(self.users)),
                 "jvm.options.d/wwts.options": jvm_options(node)}
        if self.users:
            check_users(self.users)
            existing = ""
            with contextlib.suppress(OSError):
                existing = (node / "config" / "users").read_text()
            files |= {"users": users_file(self.users, existing), "users_roles": users_roles_file(self.users),
                      "roles.yml": roles_file()}
        return files

    @functools.cached_property
    def java(self) -> Path:
        return self.java_home or find_java()

    def settings(self) -> str:
        return digest(self.version, self.java, self.java_opts, *sorted(self.files.items()))

    def prepare(self) -> None:
        owner = ensure_node_user(self.node_user)
        self.root.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(self.root, *owner)
            self.root.chmod(0o755)
        self.distribution()
        self.write_node(owner)

    def distribution(self) -> Path:
        """Download (once) and unpack (once per run root) the distribution."""
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / ".lock-dist"):
            zip_path = fetch_es_zip(self.cache / "es", self.version)
            return unpack(zip_path, self.root, f"elasticsearch-{self.version}")

    def write_node(self, owner: tuple[int, int] | None) -> None:
        node, home = self.run_dir(), self.root / f"elasticsearch-{self.version}"
        config = node / "config"
        for sub in ("config", "data", "logs", "tmp"):
            (node / sub).mkdir(parents=True, exist_ok=True)
        dist_version = config / ".dist-version"
        if not dist_version.is_file() or dist_version.read_text().strip() != self.version:
            for entry in config.iterdir():  # a fresh copy of jvm.options, log4j2.properties, ...
                if entry.name != "elasticsearch.keystore":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            shutil.copytree(home / "config", config, dirs_exist_ok=True)
            dist_version.write_text(self.version + "\n")
        for name, text in self.files.items():
            path = config / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o600 if name == "users" else 0o644)
        chown_tree(node, owner)

    def launch(self, marks: Mapping[str, str]) -> None:
        node, home = self.run_dir(), self.root / f"elasticsearch-{self.version}"
        env = server_env({"ES_JAVA_HOME": str(self.java), "ES_PATH_CONF": str(node / "config"),
                          "ES_TMPDIR": str(node / "tmp"), "ES_JAVA_OPTS": self.java_opts,
                          "HOME": str(node), **marks})
        owner = node_owner(self.node_user)
        log(f"starting {self.label} (java {self.java}, dir {node})")
        with open(node / "logs" / "startup.out", "wb") as out:
            try:  # -d returns once the node has started (or failed to)
                result = subprocess.run([str(home / "bin" / "elasticsearch"), "-d", "-p", str(self.pid_file())],
                                        env=env, cwd=node, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, timeout=self.timeout_s, start_new_session=True,
                                        user=owner[0] if owner else None, group=owner[1] if owner else None,
                                        extra_groups=[] if owner else None, check=False)
            except subprocess.TimeoutExpired:
                result = None
        if result is None or result.returncode != 0:
            pid = self.pid()
            if pid is not None:
                stop_pid(pid, self.stop_timeout_s)
            why = "timed out" if result is None else f"exit {result.returncode}"
            raise ServerError(f"{self.label} failed to start ({why}){tails(self.logs())}")

    def healthy(self) -> bool:
        status_, body, _ = es_health(self.url, self.superuser, wait=True)
        if status_ != 200 or body.get("cluster_name") != f"wwts-local-{self.port}":
            return False
        if self.users:  # security really on: no credentials, no answer
            return es_health(self.url)[0] == 401
        return True

    def exports(self) -> dict[str, str]:
        return {"WWTS_TEST_ES_SECURE_URL" if self.users else "WWTS_ES_URL": self.url}


def secure_users_from_env(env: Mapping[str, str] = os.environ) -> tuple[EsUser, ...]:
    return (EsUser(env.get("WWTS_ES_SECURE_USER") or SECURE_USER, env.get("WWTS_ES_SECURE_PASSWORD") or SECURE_PASSWORD,
                   "superuser"),
            EsUser(env.get("WWTS_ES_NOPRIV_USER") or NOPRIV_USER, env.get("WWTS_ES_NOPRIV_PASSWORD") or NOPRIV_PASSWORD,
                   NOPRIV_ROLE))


def es_from_env(secure: bool = False, env: Mapping[str, str] = os.environ) -> Elasticsearch:
    return Elasticsearch(
        port=env_int(env, "WWTS_ES_SECURE_PORT", ES_SECURE_PORT) if secure else env_int(env, "WWTS_ES_PORT", ES_PORT),
        users=secure_users_from_env(env) if secure else (),
        java_opts=env.get("ES_JAVA_OPTS") or ES_JAVA_OPTS,
        timeout_s=env_float(env, "WWTS_ES_TIMEOUT", ES_TIMEOUT_S),
        node_user=env.get("WWTS_ES_USER") or ES_NODE_USER,
        run_root=Path(env["WWTS_ES_RUN_DIR"]) if env.get("WWTS_ES_RUN_DIR") else None,
        cache=cache_root(env),
    )


# -- Go builds ----------------------------------------------------------------------------


def go_command(env: Mapping[str, str] = os.environ) -> str:
    go = env.get("GO") or "go"
    if not shutil.which(go):
        raise ServerError(f"{go!r} not found: install Go >= 1.25 (or set GO)")
    return go


def run_build(argv: Sequence[str], cwd: Path, log_file: Path, env: Mapping[str, str]) -> None:
    with open(log_file, "ab") as out:
        result = subprocess.run(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        lines = [line for line in log_file.read_text(errors="replace").splitlines()
                 if not line.startswith("go: downloading")]
        raise ServerError(f"{' '.join(argv[:3])} failed (exit {result.returncode}); log {log_file}:\n"
                          + "\n".join(lines[-TAIL_LINES:]))


def cached_build(out_dir: Path, binary: str, what: str, steps: Callable[[Path], None]) -> Path:
    """Build once into out_dir (via a temporary sibling, so an interrupted build never
    leaves a broken cache); concurrent builds of the same dir wait for each other."""
    target = out_dir / binary
    if target.is_file():
        return target
    with locked(out_dir.parent / f".{out_dir.name}.lock"):
        if target.is_file():  # built by a concurrent run while we waited
            return target
        tmp = out_dir.with_name(f"{out_dir.name}.tmp.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log(f"building {what} into {out_dir} (first build: minutes; log {tmp / 'build.log'})")
        started = time.monotonic()
        steps(tmp)
        if not (tmp / binary).is_file():
            raise ServerError(f"the {what} build produced no {binary}; log {tmp / 'build.log'}")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.replace(out_dir)
        log(f"built {what} in {time.monotonic() - started:.0f} s")
    return target


def manifest_modules(text: str) -> dict[str, str]:
    """`- gomod: <module> <version>` entries of an OCB manifest."""
    return dict(re.findall(r"^\s*-\s*gomod:\s*(\S+)\s+(v\S+)\s*$", text, re.M))


def ocb_version(text: str) -> str:
    version = manifest_modules(text).get(OCB_VERSION_OF)
    if not version:
        raise ServerError(f"no {OCB_VERSION_OF} line in {MANIFEST}: cannot tell the builder version")
    return version


def collector_build_dir(cache: Path, manifest_text: str) -> Path:
    """One build folder per manifest content: a changed manifest builds anew."""
    return cache / "otelcol" / f"build-{hashlib.sha256(manifest_text.encode()).hexdigest()[:16]}"


def build_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    nosumdb = ",".join(filter(None, [GONOSUMDB_MODULES, env.get("GONOSUMDB", "")]))
    return {**env, "GONOSUMDB": nosumdb}


def build_collector(cache: Path | None = None, manifest: Path = MANIFEST) -> Path:
    cache = cache or cache_root()
    text = manifest.read_text()
    version, go = ocb_version(text), go_command()
    ocb_dir = cache / "otelcol" / f"ocb-{version}"

    def install_ocb(tmp: Path) -> None:
        env = {**build_env(), "GOBIN": str(tmp)}
        run_build([go, "install", f"{OCB_MODULE}@{version}"], tmp, tmp / "build.log", env)

    def steps(tmp: Path) -> None:
        builder = cached_build(ocb_dir, "builder", f"the collector builder {version}", install_ocb)
        (tmp / "manifest.yaml").write_text(text)
        run_build([str(builder), "--config", str(tmp / "manifest.yaml")], tmp, tmp / "build.log", build_env())
        (tmp / "_build" / COLLECTOR_BIN).replace(tmp / COLLECTOR_BIN)

    return cached_build(collector_build_dir(cache, text), COLLECTOR_BIN, f"{COLLECTOR_BIN} ({manifest.name})", steps)


def jaeger_build_dir(cache: Path) -> Path:
    return cache / "jaeger" / f"build-{digest(JAEGER_GO_MOD, JAEGER_TOOL, JAEGER_VERSION, *GO_BUILD_FLAGS)}"


def build_jaeger(cache: Path | None = None) -> Path:
    """Jaeger v2 as the tool of a wrapper module (go.mod/go.sum kept next to the binary)."""
    cache = cache or cache_root()
    go = go_command()

    def steps(tmp: Path) -> None:
        (tmp / "go.mod").write_text(JAEGER_GO_MOD)
        run_build([go, "get", "-tool", f"{JAEGER_TOOL}@{JAEGER_VERSION}"], tmp, tmp / "build.log", build_env())
        run_build([go, "build", *GO_BUILD_FLAGS, "-o", JAEGER_BIN, JAEGER_TOOL], tmp, tmp / "build.log", build_env())

    return cached_build(jaeger_build_dir(cache), JAEGER_BIN, f"Jaeger {JAEGER_VERSION} (v2.13.0)", steps)


# -- OpenTelemetry Collector --------------------------------------------------------------


@dataclasses.dataclass
class Collector(Server):
    """The wwts collector (deploy/elk/otel-collector): OTLP in, Elasticsearch + file out.
    A named instance with its own ports and `env` (e.g. sampling thresholds) runs beside
    the default one; `configs` are overlays merged on top of config.yaml."""

    name: str = ""  # "" = the gRPC port
    grpc_endpoint: str = f"{HOST}:{OTLP_GRPC_PORT}"
    http_endpoint: str = ""    # "" = gRPC host, gRPC port + 1
    health_endpoint: str = ""  # "" = HOST, gRPC port + 8816
    es_url: str = f"http://{HOST}:{ES_PORT}"
    es_auth: EsAuth = EsAuth()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    configs: tuple[Path, ...] = ()
    traces_file: Path | None = None  # None: run dir/otelcol-traces.jsonl
    timeout_s: float = COLLECTOR_TIMEOUT_S
    cache: Path = dataclasses.field(default_factory=cache_root)

    def __post_init__(self) -> None:
        host, port = split_endpoint(self.grpc_endpoint)
        self.name = self.name or str(port)
        self.http_endpoint = self.http_endpoint or f"{host}:{port + 1}"
        self.health_endpoint = self.health_endpoint or f"{HOST}:{port + HEALTH_OFFSET}"
        for endpoint in (self.http_endpoint, self.health_endpoint):
            split_endpoint(endpoint)  # refuse a malformed override now, not at start

    @property
    def label(self) -> str:
        return f"collector {self.name} on {self.grpc_endpoint}"

    @property
    def key(self) -> str:
        return f"collector-{self.name}"

    def run_dir(self) -> Path:
        return self.cache / "otelcol" / f"run-{self.name}"

    def pid_file(self) -> Path:
        return self.run_dir() / "collector.pid"

    def log_file(self) -> Path:
        return self.run_dir() / "collector.log"

    def logs(self) -> list[Path]:
        return [self.log_file()]

    def file(self) -> Path:
        return self.traces_file or self.run_dir() / "otelcol-traces.jsonl"

    def binary(self) -> Path:
        return collector_build_dir(self.cache, MANIFEST.read_text()) / COLLECTOR_BIN

    def identity(self) -> Identity:
        """A wwts-otelcol running this checkout's config: whatever its settings, so that a
        stale instance (other ports, other env) is found and restarted, not orphaned."""
        return Identity((COLLECTOR_BIN,), f"--config {COLLECTOR_CONFIG}")

    def listen(self) -> tuple[str, ...]:
        return self.grpc_endpoint, self.http_endpoint, self.health_endpoint

    def argv(self) -> list[str]:
        configs = [COLLECTOR_CONFIG, *self.configs]
        return [str(self.binary()), *(arg for config in configs for arg in ("--config", str(config)))]

    def server_vars(self) -> dict[str, str]:
        """config.yaml's variables; `env` comes last and may override any of them."""
        return {"WWTS_OTLP_GRPC_ENDPOINT": self.grpc_endpoint, "WWTS_OTLP_HTTP_ENDPOINT": self.http_endpoint,
                "WWTS_OTELCOL_HEALTH": self.health_endpoint, "WWTS_OTELCOL_FILE": str(self.file()),
                "WWTS_ES_URL": self.es_url, **self.es_auth.env(), **self.env}

    def settings(self) -> str:
        public = {k: v for k, v in self.server_vars().items() if k not in self.es_auth.env()}
        contents = [Path(config).read_text() for config in [COLLECTOR_CONFIG, *self.configs]]
        return digest(self.argv(), sorted(public.items()), contents, self.es_auth.fingerprint())

    def precheck(self) -> None:
        install_traces_template(self.es_url, self.es_auth)

    def prepare(self) -> None:
        build_collector(self.cache)
        self.run_dir().mkdir(parents=True, exist_ok=True)
        self.file().parent.mkdir(parents=True, exist_ok=True)

    def launch(self, marks: Mapping[str, str]) -> None:
        with open(self.log_file(), "a") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(self.argv())}\n")
        pid = spawn(self.argv(), server_env({**self.server_vars(), **marks}), self.run_dir(), self.log_file())
        self.pid_file().write_text(f"{pid}\n")
        log(f"{self.label}: starting (pid {pid}, log {self.log_file()})")

    def healthy(self) -> bool:
        host, port = connect_endpoint(self.health_endpoint)
        return (http("GET", f"http://{host}:{port}/", timeout_s=2)[0] == 200
                and accepts(self.grpc_endpoint) and accepts(self.http_endpoint))

    def exports(self) -> dict[str, str]:
        http_host, http_port = connect_endpoint(self.http_endpoint)
        grpc_host, grpc_port = connect_endpoint(self.grpc_endpoint)
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{http_host}:{http_port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "WWTS_OTLP_GRPC_URL": f"http://{grpc_host}:{grpc_port}",
                "WWTS_OTELCOL_FILE": str(self.file()), "WWTS_OTELCOL_LOG": str(self.log_file()),
                "WWTS_OTELCOL_PID": str(self.pid() or "")}


def config_env_names(configs: Sequence[Path]) -> set[str]:
    """The variables a collector config reads (`${env:NAME}` / `${env:NAME:-default}`)."""
    return {name for config in configs for name in re.findall(r"\$\{env:([A-Za-z_]\w*)", config.read_text())}


def collector_from_env(env: Mapping[str, str] = os.environ) -> Collector:
    """The collector the command line means; the other variables its configs read (e.g.
    `WWTS_SAMPLING_*`) come from `env` too, when set there."""
    collector = _collector_settings_from_env(env)
    names = config_env_names([COLLECTOR_CONFIG, *collector.configs]) - set(collector.server_vars()) - set(EsAuth.VARS)
    return dataclasses.replace(collector, env={name: env[name] for name in sorted(names) if name in env})


def _collector_settings_from_env(env: Mapping[str, str]) -> Collector:
    return Collector(
        grpc_endpoint=env.get("WWTS_OTLP_GRPC_ENDPOINT") or f"{HOST}:{OTLP_GRPC_PORT}",
        http_endpoint=env.get("WWTS_OTLP_HTTP_ENDPOINT", ""),
        health_endpoint=env.get("WWTS_OTELCOL_HEALTH", ""),
        es_url=env.get("WWTS_ES_URL") or es_from_env(env=env).url,
        es_auth=EsAuth.from_env(env),
        configs=tuple(Path(path) for path in env.get("WWTS_OTELCOL_CONFIGS", "").split(os.pathsep) if path),
        traces_file=Path(env["WWTS_OTELCOL_FILE"]) if env.get("WWTS_OTELCOL_FILE") else None,
        timeout_s=env_float(env, "WWTS_OTELCOL_TIMEOUT", COLLECTOR_TIMEOUT_S),
        cache=cache_root(env),
    )


# -- Jaeger -------------------------------------------------------------------------------


@dataclasses.dataclass
class Jaeger(Server):
    """Jaeger v2 with in-memory storage (deploy/elk/jaeger/config.yaml): OTLP in, the query
    API (GET /api/traces/{id}, /api/v3/traces/{id}) out."""

    name: str = ""  # "" = the OTLP gRPC port
    otlp_grpc_endpoint: str = f"{HOST}:{JAEGER_OTLP_GRPC_PORT}"
    otlp_http_endpoint: str = ""   # "" = OTLP gRPC port + 1
    query_endpoint: str = f"{HOST}:{JAEGER_QUERY_PORT}"
    query_grpc_endpoint: str = ""  # "" = query port - 1
    timeout_s: float = JAEGER_TIMEOUT_S
    cache: Path = dataclasses.field(default_factory=cache_root)

    def __post_init__(self) -> None:
        host, port = split_endpoint(self.otlp_grpc_endpoint)
        query_host, query_port = split_endpoint(self.query_endpoint)
        self.name = self.name or str(port)
        self.otlp_http_endpoint = self.otlp_http_endpoint or f"{host}:{port + 1}"
        self.query_grpc_endpoint = self.query_grpc_endpoint or f"{query_host}:{query_port - 1}"

    @property
    def label(self) -> str:
        return f"Jaeger {JAEGER_VERSION} on {self.otlp_grpc_endpoint} (query {self.query_url})"

    @property
    def key(self) -> str:
        return f"jaeger-{self.name}"

    @property
    def query_url(self) -> str:
        host, port = connect_endpoint(self.query_endpoint)
        return f"http://{host}:{port}"

    def run_dir(self) -> Path:
        return self.cache / "jaeger" / f"run-{self.name}"

    def pid_file(self) -> Path:
        return self.run_dir() / "jaeger.pid"

    def log_file(self) -> Path:
        return self.run_dir() / "jaeger.log"

    def logs(self) -> list[Path]:
        return [self.log_file()]

    def binary(self) -> Path:
        return jaeger_build_dir(self.cache) / JAEGER_BIN

    def identity(self) -> Identity:
        return Identity((JAEGER_BIN,), f"--config {JAEGER_CONFIG}")

    def listen(self) -> tuple[str, ...]:
        return self.otlp_grpc_endpoint, self.otlp_http_endpoint, self.query_endpoint, self.query_grpc_endpoint

    def argv(self) -> list[str]:
        return [str(self.binary()), "--config", str(JAEGER_CONFIG)]

    def server_vars(self) -> dict[str, str]:
        return {"WWTS_JAEGER_OTLP_ENDPOINT": self.otlp_grpc_endpoint,
                "WWTS_JAEGER_OTLP_HTTP_ENDPOINT": self.otlp_http_endpoint,
                "WWTS_JAEGER_QUERY_ENDPOINT": self.query_endpoint,
                "WWTS_JAEGER_QUERY_GRPC_ENDPOINT": self.query_grpc_endpoint}

    def settings(self) -> str:
        return digest(self.argv(), sorted(self.server_vars().items()), JAEGER_CONFIG.read_text())

    def prepare(self) -> None:
        build_jaeger(self.cache)
        self.run_dir().mkdir(parents=True, exist_ok=True)

    def launch(self, marks: Mapping[str, str]) -> None:
        pid = spawn(self.argv(), server_env({**self.server_vars(), **marks}), self.run_dir(), self.log_file())
        self.pid_file().write_text(f"{pid}\n")
        log(f"{self.label}: starting (pid {pid}, log {self.log_file()})")

    def healthy(self) -> bool:
        return (http("GET", f"{self.query_url}/api/services", timeout_s=2)[0] == 200
                and accepts(self.otlp_grpc_endpoint) and accepts(self.otlp_http_endpoint))

    def exports(self) -> dict[str, str]:
        host, port = connect_endpoint(self.otlp_grpc_endpoint)
        return {"WWTS_JAEGER_OTLP_ENDPOINT": f"{host}:{port}", "WWTS_JAEGER_QUERY_URL": self.query_url}


def jaeger_from_env(env: Mapping[str, str] = os.environ) -> Jaeger:
    return Jaeger(
        otlp_grpc_endpoint=env.get("WWTS_JAEGER_OTLP_ENDPOINT") or f"{HOST}:{JAEGER_OTLP_GRPC_PORT}",
        query_endpoint=env.get("WWTS_JAEGER_QUERY_ENDPOINT") or f"{HOST}:{JAEGER_QUERY_PORT}",
        timeout_s=env_float(env, "WWTS_JAEGER_TIMEOUT", JAEGER_TIMEOUT_S),
        cache=cache_root(env),
    )


# -- command line -------------------------------------------------------------------------

TARGETS = ("es", "es-secure", "collector", "jaeger")


def server_for(target: str, env: Mapping[str, str] = os.environ) -> Server:
    if target in ("es", "es-secure"):
        return es_from_env(secure=target == "es-secure", env=env)
    if target == "collector":
        return collector_from_env(env)
    return jaeger_from_env(env)


def expand(targets: Sequence[str], allowed: Sequence[str]) -> list[str]:
    chosen = [t for target in targets for t in (allowed if target == "all" else [target])]
    unknown = [t for t in chosen if t not in allowed]
    if unknown:
        raise ServerError(f"unknown target {unknown[0]!r}: choose from {', '.join(allowed)}, all")
    return list(dict.fromkeys(chosen))


def build(target: str) -> None:
    if target == "es":
        server = es_from_env()
        ensure_node_user(server.node_user)
        log(f"Elasticsearch {server.version}: {server.distribution()}")
    elif target == "collector":
        log(f"collector: {build_collector()}")
    else:
        log(f"Jaeger: {build_jaeger()}")


def print_exports(exports: Mapping[str, str]) -> None:
    for name, value in exports.items():
        print(f"{name}={shlex.quote(value)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m deploy.servers",
                                     description="Local servers for development and tests.")
    parser.add_argument("command", choices=("up", "down", "status", "url", "build"))
    parser.add_argument("targets", nargs="+", metavar="target", help="es, es-secure, collector, jaeger or all")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for target in expand(args.targets, ("es", "collector", "jaeger")):
                build(target)
            return 0
        ok = True
        for target in expand(args.targets, TARGETS):
            server = server_for(target)
            if args.command == "up":
                print_exports(up(server))
            elif args.command == "down":
                down(server)
            elif args.command == "url":
                print_exports({k: v for k, v in server.exports().items() if not k.startswith("WWTS_OTELCOL_")})
            else:
                ok = status(server) and ok
        return 0 if ok else 1
    except ServerError as exc:
        print(f"servers: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
