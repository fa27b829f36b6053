#!/usr/bin/env bash
# Build and run the wwts OpenTelemetry Collector locally (no Docker).
#
#   deploy/elk/local/otelcol.sh build    build the collector with OCB (cached; prints the binary path)
#   deploy/elk/local/otelcol.sh up       build if needed, install the traces index template into
#                                        $WWTS_ES_URL (when set), start the collector in the
#                                        background, wait until it answers, print its endpoints
#                                        (idempotent: a running collector with the same settings
#                                        is left alone, one with different settings is restarted)
#   deploy/elk/local/otelcol.sh down     stop the collector this script started for the gRPC port
#   deploy/elk/local/otelcol.sh status   say whether it runs (exit 0) or not (exit 1)
#
# The binary comes from deploy/elk/otel-collector/manifest.yaml, built by the OpenTelemetry
# Collector Builder at the manifest's core version, once per manifest content: the build
# folder is $WWTS_CACHE/otelcol/build-<sha256 of manifest.yaml, 16 hex>/. The collector runs
# deploy/elk/otel-collector/config.yaml; run files (pid, log, OTLP-JSON file) live in
# $WWTS_CACHE/otelcol/run-<grpc port>/.
#
# `up` prints shell assignments on stdout (eval-able), progress goes to stderr:
#   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
#   OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
#   WWTS_OTLP_GRPC_URL=http://127.0.0.1:4317
#   WWTS_OTELCOL_FILE=...   WWTS_OTELCOL_LOG=...   WWTS_OTELCOL_PID=...
#
# Environment (all optional):
#   WWTS_CACHE                cache root (default $HOME/.cache/wwts)
#   WWTS_OTLP_GRPC_ENDPOINT   OTLP/gRPC listen address (default 127.0.0.1:4317)
#   WWTS_OTLP_HTTP_ENDPOINT   OTLP/HTTP listen address (default: gRPC host, gRPC port + 1,
#                             i.e. 127.0.0.1:4318)
#   WWTS_OTELCOL_HEALTH       health_check listen address (default 127.0.0.1:<grpc port + 8816>,
#                             i.e. 13133 for 4317, so collectors on other ports do not collide)
#   WWTS_OTELCOL_FILE         OTLP-JSON lines output (default run-<port>/otelcol-traces.jsonl)
#   WWTS_ES_URL               Elasticsearch; when set the template is installed first and the
#                             collector exports there (unset: the config default
#                             http://127.0.0.1:9200, template not installed)
#   WWTS_ES_API_KEY / WWTS_ES_USERNAME + WWTS_ES_PASSWORD / WWTS_ES_CA_CERTS   credentials, TLS
#   WWTS_OTELCOL_TIMEOUT      seconds to wait for the collector to answer (default 60)
#   GO                        go command (default: go)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ELK_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
COL_DIR="$ELK_DIR/otel-collector"
MANIFEST="$COL_DIR/manifest.yaml"
CONFIG="$COL_DIR/config.yaml"
TEMPLATE="$ELK_DIR/traces-template.json"
TEMPLATE_NAME="wwts-traces"
BIN_NAME="wwts-otelcol"

log() { printf 'otelcol.sh: %s\n' "$*" >&2; }
die() { printf 'otelcol.sh: error: %s\n' "$*" >&2; exit 1; }

CACHE_DIR="${WWTS_CACHE:-$HOME/.cache/wwts}/otelcol"
GO="${GO:-go}"
TIMEOUT="${WWTS_OTELCOL_TIMEOUT:-60}"

GRPC_ENDPOINT="${WWTS_OTLP_GRPC_ENDPOINT:-127.0.0.1:4317}"
GRPC_PORT="${GRPC_ENDPOINT##*:}"
case "$GRPC_PORT" in '' | *[!0-9]*) die "WWTS_OTLP_GRPC_ENDPOINT must be host:port (got '$GRPC_ENDPOINT')" ;; esac
# HTTP defaults to the gRPC host and port + 1 (4318 for 4317).
HTTP_ENDPOINT="${WWTS_OTLP_HTTP_ENDPOINT:-${GRPC_ENDPOINT%:*}:$((GRPC_PORT + 1))}"
HTTP_PORT="${HTTP_ENDPOINT##*:}"
RUN_DIR="$CACHE_DIR/run-${GRPC_PORT}"

case "$HTTP_PORT" in '' | *[!0-9]*) die "WWTS_OTLP_HTTP_ENDPOINT must be host:port (got '$HTTP_ENDPOINT')" ;; esac

if [ -n "${WWTS_OTELCOL_HEALTH:-}" ]; then
    HEALTH_ENDPOINT="$WWTS_OTELCOL_HEALTH"
else
    health_port=$((GRPC_PORT + 8816))
    [ "$health_port" -le 65535 ] || die "set WWTS_OTELCOL_HEALTH (gRPC port $GRPC_PORT + 8816 is not a port)"
    HEALTH_ENDPOINT="127.0.0.1:${health_port}"
fi

# host:port to connect to (a wildcard listen address is reached on loopback)
connect_addr() {
    local host="${1%:*}" port="${1##*:}"
    case "$host" in '' | 0.0.0.0 | '[::]' | '::') host=127.0.0.1 ;; esac
    printf '%s:%s\n' "$host" "$port"
}

# ---------------------------------------------------------------- build

sha256_of() { sha256sum "$1" | cut -c1-16; }

# The builder must match the collector core version the manifest pins.
ocb_version() {
    local v
    v="$(sed -n 's#^.*gomod: go\.opentelemetry\.io/collector/receiver/otlpreceiver \(v[0-9][0-9.]*\).*$#\1#p' "$MANIFEST" | head -n1)"
    [ -n "$v" ] || die "cannot find the otlpreceiver version in $MANIFEST"
    printf '%s\n' "$v"
}

build_dir() { printf '%s/build-%s\n' "$CACHE_DIR" "$(sha256_of "$MANIFEST")"; }
binary_path() { printf '%s/_build/%s\n' "$(build_dir)" "$BIN_NAME"; }

lock() {  # $1 = lock file; held until this script exits
    exec 9>"$1"
    if ! flock -w 900 9; then
        die "timed out waiting for the lock $1"
    fi
}

install_ocb() {  # prints the builder's path
    local v gobin
    v="$(ocb_version)"
    gobin="$CACHE_DIR/ocb-$v"
    if [ ! -x "$gobin/builder" ]; then
        command -v "$GO" >/dev/null 2>&1 || die "'$GO' not found: install Go >= 1.25 (or set GO)"
        log "installing the collector builder $v into $gobin"
        mkdir -p "$gobin"
        GOBIN="$gobin" "$GO" install "go.opentelemetry.io/collector/cmd/builder@$v" >&2 ||
            die "go install go.opentelemetry.io/collector/cmd/builder@$v failed"
    fi
    printf '%s\n' "$gobin/builder"
}

cmd_build() {
    [ -f "$MANIFEST" ] || die "missing $MANIFEST"
    mkdir -p "$CACHE_DIR"
    local dir bin
    dir="$(build_dir)"
    bin="$dir/_build/$BIN_NAME"
    if [ -x "$bin" ]; then
        log "collector already built for this manifest: $bin"
        printf '%s\n' "$bin"
        return 0
    fi
    lock "$CACHE_DIR/.build.lock"
    if [ -x "$bin" ]; then  # built by a concurrent run while we waited
        printf '%s\n' "$bin"
        return 0
    fi
    local ocb tmp start rc=0
    ocb="$(install_ocb)"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp "$MANIFEST" "$tmp/manifest.yaml"
    log "building $BIN_NAME with $("$ocb" version 2>&1 | tr -d "\n") (first build: several minutes)"
    log "build log: $tmp/build.log"
    start=$SECONDS
    (
        cd "$tmp"
        # See manifest.yaml: the checksum database has no entry for ebpf-profiler.
        export GONOSUMDB="go.opentelemetry.io/ebpf-profiler${GONOSUMDB:+,$GONOSUMDB}"
        "$ocb" --config "$tmp/manifest.yaml" >"$tmp/build.log" 2>&1
    ) || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -x "$tmp/_build/$BIN_NAME" ]; then
        grep -v '^go: downloading' "$tmp/build.log" | tail -n 40 >&2 || true
        die "collector build failed (exit $rc); full log: $tmp/build.log"
    fi
    mv "$tmp/build.log" "$tmp/_build/build.log"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "built $dir/_build/$BIN_NAME in $((SECONDS - start))s"
    printf '%s\n' "$bin"
}

# ---------------------------------------------------------------- Elasticsearch

es_curl() {  # curl with the configured credentials and CA; never echoes them
    local args=(-sS --max-time 30)
    if [ -n "${WWTS_ES_API_KEY:-}" ]; then
        args+=(-H "Authorization: ApiKey ${WWTS_ES_API_KEY}")
    elif [ -n "${WWTS_ES_USERNAME:-}" ]; then
        args+=(-u "${WWTS_ES_USERNAME}:${WWTS_ES_PASSWORD:-}")
    fi
    [ -n "${WWTS_ES_CA_CERTS:-}" ] && args+=(--cacert "$WWTS_ES_CA_CERTS")
    curl "${args[@]}" "$@"
}

install_template() {
    local url="${WWTS_ES_URL%/}" code out
    out="$(mktemp)"
    # (GET / is no use: the integ-test-zip distribution lacks the rest-root module.)
    code="$(es_curl -o "$out" -w '%{http_code}' "$url/_cluster/health" 2>"$out.err")" || code=000
    if [ "$code" = 000 ]; then
        local why
        why="$(cat "$out.err")"
        rm -f "$out" "$out.err"
        die "Elasticsearch at $url is unreachable (${why:-no answer}); start it (deploy/elk/local/es.sh up) or fix WWTS_ES_URL"
    fi
    if [ "$code" != 200 ]; then
        rm -f "$out" "$out.err"
        die "Elasticsearch at $url answered HTTP $code (credentials? WWTS_ES_API_KEY / WWTS_ES_USERNAME)"
    fi
    code="$(es_curl -o "$out" -w '%{http_code}' -X PUT "$url/_index_template/$TEMPLATE_NAME" \
        -H 'Content-Type: application/json' --data-binary "@$TEMPLATE" 2>"$out.err")" || code=000
    if [ "$code" != 200 ]; then
        log "response: $(head -c 2000 "$out") $(cat "$out.err")"
        rm -f "$out" "$out.err"
        die "installing index template $TEMPLATE_NAME into $url failed (HTTP $code)"
    fi
    rm -f "$out" "$out.err"
    log "index template $TEMPLATE_NAME installed into $url"
}

# ---------------------------------------------------------------- run

PID_FILE="$RUN_DIR/collector.pid"
LOG_FILE="$RUN_DIR/collector.log"
FPR_FILE="$RUN_DIR/settings"

running_pid() {  # prints the pid of our collector for this port if it is alive
    [ -f "$PID_FILE" ] || return 0
    local pid exe
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    case "$exe" in */"$BIN_NAME" | */"$BIN_NAME (deleted)") printf '%s\n' "$pid" ;; esac
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "collector (pid $pid) ignored SIGTERM for 10s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

healthy() {
    curl -fsS --max-time 2 -o /dev/null "http://$(connect_addr "$HEALTH_ENDPOINT")/" 2>/dev/null &&
        (exec 3<>"/dev/tcp/${HTTP_CONNECT%:*}/${HTTP_CONNECT##*:}") 2>/dev/null &&
        (exec 3<>"/dev/tcp/${GRPC_CONNECT%:*}/${GRPC_CONNECT##*:}") 2>/dev/null
}

print_endpoints() {
    printf 'OTEL_EXPORTER_OTLP_ENDPOINT=http://%s\n' "$HTTP_CONNECT"
    printf 'OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\n'
    printf 'WWTS_OTLP_GRPC_URL=http://%s\n' "$GRPC_CONNECT"
    printf 'WWTS_OTELCOL_FILE=%s\n' "$OTELCOL_FILE"
    printf 'WWTS_OTELCOL_LOG=%s\n' "$LOG_FILE"
    printf 'WWTS_OTELCOL_PID=%s\n' "$1"
}

HTTP_CONNECT="$(connect_addr "$HTTP_ENDPOINT")"
GRPC_CONNECT="$(connect_addr "$GRPC_ENDPOINT")"
OTELCOL_FILE="${WWTS_OTELCOL_FILE:-$RUN_DIR/otelcol-traces.jsonl}"

cmd_up() {
    local bin
    bin="$(cmd_build)"
    [ -n "${WWTS_ES_URL:-}" ] && install_template

    mkdir -p "$RUN_DIR"
    lock "$RUN_DIR/.lock"

    # What this collector would run with; a running one with other settings is restarted.
    # (Secrets enter only as a hash.)
    local fpr
    fpr="$(printf '%s\n' "$bin" "$(sha256_of "$CONFIG")" "$GRPC_ENDPOINT" "$HTTP_ENDPOINT" \
        "$HEALTH_ENDPOINT" "$OTELCOL_FILE" "${WWTS_ES_URL:-}" \
        "$(printf '%s|%s|%s|%s' "${WWTS_ES_API_KEY:-}" "${WWTS_ES_USERNAME:-}" \
            "${WWTS_ES_PASSWORD:-}" "${WWTS_ES_CA_CERTS:-}" | sha256sum | cut -c1-16)")"

    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        if [ "$(cat "$FPR_FILE" 2>/dev/null || true)" = "$fpr" ] && healthy; then
            log "collector already running (pid $pid)"
            print_endpoints "$pid"
            return 0
        fi
        log "collector (pid $pid) runs with other settings or does not answer; restarting it"
        stop_pid "$pid"
    fi
    rm -f "$PID_FILE"

    # Refuse to start on ports something else holds: the new collector would die anyway.
    local ep
    for ep in "$GRPC_CONNECT" "$HTTP_CONNECT" "$(connect_addr "$HEALTH_ENDPOINT")"; do
        if (exec 3<>"/dev/tcp/${ep%:*}/${ep##*:}") 2>/dev/null; then
            die "$ep is already in use by another process; pick other ports (WWTS_OTLP_GRPC_ENDPOINT, WWTS_OTLP_HTTP_ENDPOINT, WWTS_OTELCOL_HEALTH)"
        fi
    done

    mkdir -p "$(dirname "$OTELCOL_FILE")"
    {
        printf '\n===== %s starting %s --config %s\n' "$(date -u +%FT%TZ)" "$bin" "$CONFIG"
    } >>"$LOG_FILE"
    # setsid: own session, so the collector survives the calling shell and its signals.
    # (No job control in a script: the background child is not a group leader, so setsid
    # does not fork and $! is the collector's pid.)
    WWTS_OTLP_GRPC_ENDPOINT="$GRPC_ENDPOINT" \
        WWTS_OTLP_HTTP_ENDPOINT="$HTTP_ENDPOINT" \
        WWTS_OTELCOL_HEALTH="$HEALTH_ENDPOINT" \
        WWTS_OTELCOL_FILE="$OTELCOL_FILE" \
        setsid nohup "$bin" --config "$CONFIG" >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    printf '%s\n' "$fpr" >"$FPR_FILE"
    log "collector starting (pid $pid, log $LOG_FILE)"

    local deadline=$((SECONDS + TIMEOUT))
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "collector exited during startup (log: $LOG_FILE)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$LOG_FILE" >&2 || true
            stop_pid "$pid"
            rm -f "$PID_FILE"
            die "collector did not answer on $HEALTH_ENDPOINT within ${TIMEOUT}s"
        fi
        sleep 0.2
    done
    log "collector up: OTLP gRPC $GRPC_CONNECT, OTLP HTTP $HTTP_CONNECT, health $HEALTH_ENDPOINT, ES ${WWTS_ES_URL:-http://127.0.0.1:9200 (config default)}, file $OTELCOL_FILE"
    print_endpoints "$pid"
}

cmd_down() {
    [ -d "$RUN_DIR" ] || { log "no collector for port $GRPC_PORT"; return 0; }
    lock "$RUN_DIR/.lock"
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        log "no collector running for port $GRPC_PORT"
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping collector (pid $pid, port $GRPC_PORT)"
    stop_pid "$pid"
    rm -f "$PID_FILE" "$FPR_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ] && healthy; then
        log "collector running (pid $pid)"
        print_endpoints "$pid"
        return 0
    fi
    log "no healthy collector for port $GRPC_PORT"
    return 1
}

case "${1:-}" in
    build) cmd_build ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    -h | --help | help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        ;;
    *)
        echo "usage: $0 {build|up|down|status}" >&2
        exit 2
        ;;
esac
