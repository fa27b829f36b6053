#!/usr/bin/env bash
# Run a real, throwaway, single-node Elasticsearch on this machine without Docker.
#
#   deploy/elk/local/es.sh up     start the node (idempotent); last stdout line is its URL
#   deploy/elk/local/es.sh down   stop the node this script started for the port (no-op if none)
#   deploy/elk/local/es.sh url    print the URL
#
# Uses Elasticsearch's published "integ-test-zip" distribution from Maven Central
# (no bundled JDK, no ILM/ingest/painless; composable index templates work).
# All progress goes to stderr; stdout carries only the URL.
#
# Environment:
#   ES_VERSION            Elasticsearch version (default pinned below)
#   WWTS_ES_PORT          HTTP port (default 9200); transport port = HTTP port + 100
#   WWTS_ES_TRANSPORT_PORT  override the transport port
#   WWTS_CACHE            cache root (default $HOME/.cache/wwts); files go to $WWTS_CACHE/es
#   WWTS_ES_RUN_DIR       where the unpacked distribution and node-<port>/ dirs live
#                         (default $WWTS_CACHE/es; see "root" below)
#   WWTS_ES_USER          unprivileged user the node runs as when invoked as root (wwts-es)
#   WWTS_ES_TIMEOUT       seconds to wait for the node to become healthy (default 120)
#   ES_JAVA_HOME          JDK >= 21 (default: newest found under /usr/lib/jvm)
#   ES_JAVA_OPTS          JVM options (default "-Xms512m -Xmx512m")
#   MVN                   maven command (default mvn; falls back to curl from Maven Central)
#   WWTS_ES_SECURITY      true: security ON (authentication over plain HTTP, no TLS), for
#                         testing 401/403; default false (security off, no credentials)
#   WWTS_ES_SECURE_USER / WWTS_ES_SECURE_PASSWORD
#                         file-realm superuser of a secured node (wwts-test / wwts-test-password)
#   WWTS_ES_NOPRIV_USER / WWTS_ES_NOPRIV_PASSWORD
#                         file-realm user with only the `monitor` cluster privilege: it
#                         authenticates but every write answers 403
#                         (wwts-nopriv / wwts-nopriv-password)
#
# Root: Elasticsearch refuses to run as root, so as root the node runs as $WWTS_ES_USER
# (created on demand). That user must be able to reach the unpacked distribution; when the
# cache sits under a private home such as /root (mode 700), the runtime files go to
# /var/lib/wwts-es instead (the downloaded zip stays in the cache).
set -euo pipefail

ES_VERSION="${ES_VERSION:-9.5.4}"
PORT="${WWTS_ES_PORT:-9200}"
TRANSPORT_PORT="${WWTS_ES_TRANSPORT_PORT:-$((PORT + 100))}"
HOST=127.0.0.1
URL="http://${HOST}:${PORT}"
CACHE_DIR="${WWTS_CACHE:-$HOME/.cache/wwts}/es"
ES_USER="${WWTS_ES_USER:-wwts-es}"
TIMEOUT="${WWTS_ES_TIMEOUT:-120}"
JAVA_OPTS_DEFAULT="-Xms512m -Xmx512m"
CLUSTER_NAME="wwts-local-${PORT}"
MAVEN_GA="org.elasticsearch.distribution.integ-test-zip:elasticsearch"
CENTRAL="https://repo1.maven.org/maven2"
SECURITY="${WWTS_ES_SECURITY:-false}"
case "$SECURITY" in
    true | 1 | yes | on) SECURITY=true ;;
    false | 0 | no | off | "") SECURITY=false ;;
    *) printf 'es.sh: error: WWTS_ES_SECURITY=%s is not true or false\n' "$SECURITY" >&2; exit 2 ;;
esac
SECURE_USER="${WWTS_ES_SECURE_USER:-wwts-test}"
SECURE_PASSWORD="${WWTS_ES_SECURE_PASSWORD:-wwts-test-password}"
NOPRIV_USER="${WWTS_ES_NOPRIV_USER:-wwts-nopriv}"
NOPRIV_PASSWORD="${WWTS_ES_NOPRIV_PASSWORD:-wwts-nopriv-password}"
NOPRIV_ROLE="wwts_monitor_only"

log() { printf 'es.sh: %s\n' "$*" >&2; }
die() { printf 'es.sh: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the user that owns the node (wwts-es when we are root, else ourselves).
as_node_user() {
    if is_root; then
        runuser -u "$ES_USER" -- "$@"
    else
        "$@"
    fi
}

# ---------------------------------------------------------------- locations

run_dir() {
    if [ -n "${WWTS_ES_RUN_DIR:-}" ]; then
        printf '%s\n' "$WWTS_ES_RUN_DIR"
        return
    fi
    if is_root && id -u "$ES_USER" >/dev/null 2>&1; then
        mkdir -p "$CACHE_DIR"
        if ! runuser -u "$ES_USER" -- test -x "$CACHE_DIR" 2>/dev/null; then
            printf '%s\n' /var/lib/wwts-es
            return
        fi
    elif is_root; then
        # user not created yet: decide on the permissions of the path alone
        local d="$CACHE_DIR"
        mkdir -p "$d"
        while [ "$d" != / ]; do
            if [ "$(( 0$(stat -c %a "$d") & 01 ))" -eq 0 ]; then
                printf '%s\n' /var/lib/wwts-es
                return
            fi
            d="$(dirname "$d")"
        done
    fi
    printf '%s\n' "$CACHE_DIR"
}

# ---------------------------------------------------------------- java

java_major() {  # $1 = JDK home; prints the major version or nothing
    local home="$1" v=""
    [ -x "$home/bin/java" ] || return 0
    if [ -r "$home/release" ]; then
        v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release" | head -n1)"
    fi
    if [ -z "$v" ]; then
        v="$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    fi
    printf '%s' "$v"
}

find_java() {
    if [ -n "${ES_JAVA_HOME:-}" ]; then
        local m
        m="$(java_major "$ES_JAVA_HOME")"
        [ -n "$m" ] && [ "$m" -ge 21 ] ||
            die "ES_JAVA_HOME=$ES_JAVA_HOME is not a JDK >= 21 (Elasticsearch 9 needs Java 21+)"
        printf '%s\n' "$ES_JAVA_HOME"
        return
    fi
    local best="" best_major=0 home m
    for home in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
        [ -d "$home" ] || continue
        [ -L "$home" ] && continue
        m="$(java_major "$home")"
        [ -n "$m" ] || continue
        if [ "$m" -ge 21 ] && [ "$m" -gt "$best_major" ]; then
            best="$home"
            best_major="$m"
        fi
    done
    [ -n "$best" ] ||
        die "no JDK >= 21 under /usr/lib/jvm; install one (e.g. Temurin 21/25) or set ES_JAVA_HOME"
    printf '%s\n' "$best"
}

# ---------------------------------------------------------------- download + unpack

fetch_zip() {  # prints the path of the cached zip
    local zip="$CACHE_DIR/elasticsearch-${ES_VERSION}.zip"
    if [ -s "$zip" ]; then
        printf '%s\n' "$zip"
        return
    fi
    local tmp
    tmp="$(mktemp -d "$CACHE_DIR/.dl.XXXXXX")"
    log "downloading ${MAVEN_GA}:${ES_VERSION}:zip from Maven Central"
    local mvn="${MVN:-mvn}"
    if command -v "$mvn" >/dev/null 2>&1; then
        if ! "$mvn" -B -q -Dstyle.color=never \
            org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
            -Dartifact="${MAVEN_GA}:${ES_VERSION}:zip" \
            -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
            cat "$tmp/mvn.log" >&2
            rm -rf "$tmp"
            die "maven could not fetch ${MAVEN_GA}:${ES_VERSION}:zip"
        fi
    else
        log "maven not found; fetching with curl"
        local rel="org/elasticsearch/distribution/integ-test-zip/elasticsearch/${ES_VERSION}/elasticsearch-${ES_VERSION}.zip"
        curl -fsSL --retry 3 -o "$tmp/elasticsearch-${ES_VERSION}.zip" "$CENTRAL/$rel" ||
            { rm -rf "$tmp"; die "could not download $CENTRAL/$rel"; }
        # checksum files are not always served; check it when it is
        if curl -fsSL --retry 3 -o "$tmp/zip.sha1" "$CENTRAL/$rel.sha1" 2>/dev/null; then
            local want got
            want="$(cut -c1-40 "$tmp/zip.sha1")"
            got="$(sha1sum "$tmp/elasticsearch-${ES_VERSION}.zip" | cut -c1-40)"
            [ "$want" = "$got" ] || { rm -rf "$tmp"; die "sha1 mismatch for $rel"; }
        else
            log "no .sha1 published for $rel; relying on the zip's own CRCs"
        fi
    fi
    [ -s "$tmp/elasticsearch-${ES_VERSION}.zip" ] ||
        { rm -rf "$tmp"; die "download produced no elasticsearch-${ES_VERSION}.zip"; }
    if command -v unzip >/dev/null 2>&1; then
        unzip -tqq "$tmp/elasticsearch-${ES_VERSION}.zip" >/dev/null ||
            { rm -rf "$tmp"; die "downloaded zip is corrupt"; }
    fi
    mv "$tmp/elasticsearch-${ES_VERSION}.zip" "$zip"
    rm -rf "$tmp"
    printf '%s\n' "$zip"
}

unpack() {  # $1 = zip, $2 = run dir; prints ES_HOME
    local zip="$1" rdir="$2"
    local home="$rdir/elasticsearch-${ES_VERSION}"
    if [ -x "$home/bin/elasticsearch" ] && [ -f "$home/.wwts-unpacked" ]; then
        printf '%s\n' "$home"
        return
    fi
    log "unpacking $(basename "$zip") into $rdir"
    rm -rf "$home"
    local tmp
    tmp="$(mktemp -d "$rdir/.unpack.XXXXXX")"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$zip" -d "$tmp"
    else
        (cd "$tmp" && "$JAVA_HOME_FOUND/bin/jar" xf "$zip")
    fi
    [ -d "$tmp/elasticsearch-${ES_VERSION}" ] || { rm -rf "$tmp"; die "unexpected zip layout in $zip"; }
    chmod -R a+rX "$tmp/elasticsearch-${ES_VERSION}"
    chmod a+rx "$tmp/elasticsearch-${ES_VERSION}"/bin/*
    mv "$tmp/elasticsearch-${ES_VERSION}" "$home"
    rm -rf "$tmp"
    touch "$home/.wwts-unpacked"
    printf '%s\n' "$home"
}

# ---------------------------------------------------------------- node

ensure_user() {
    is_root || return 0
    if ! id -u "$ES_USER" >/dev/null 2>&1; then
        log "creating system user $ES_USER"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --user-group "$ES_USER" 2>/dev/null ||
            id -u "$ES_USER" >/dev/null 2>&1 ||  # lost a race with a parallel run
            die "could not create user $ES_USER"
    fi
}

node_pid() {  # prints the pid of our node for this port if it is alive
    local node_dir="$1" pid
    [ -s "$node_dir/es.pid" ] || return 0
    pid="$(tr -dc 0-9 <"$node_dir/es.pid")"
    [ -n "$pid" ] || return 0
    # only a live Elasticsearch process whose command line names our node dir counts
    if [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "org.elasticsearch" &&
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "ES_PATH_CONF=$node_dir/config"; then
        printf '%s\n' "$pid"
    fi
}

# Prints the cluster_name of whatever answers on the port ("?" if it is not
# Elasticsearch), nothing if the port is free. (GET / is not served by the integ-test-zip:
# its rest-root module is missing, so / answers 405; _cluster/health is always there.)
answering_cluster() {
    local body name
    body="$(es_curl -s --max-time 3 "$URL/_cluster/health" 2>/dev/null)" || return 0
    name="$(printf '%s' "$body" | tr -d '\n' |
        sed -n 's/.*"cluster_name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')"
    printf '%s\n' "${name:-?}"
}

healthy() {
    es_curl -fs --max-time 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1
}

# curl, authenticated as the superuser when security is on. The credentials go to curl
# through a config on stdin, so they never show in the process list.
es_curl() {
    if [ "$SECURITY" = true ]; then
        local user="${SECURE_USER}:${SECURE_PASSWORD}"
        user="${user//\\/\\\\}"
        user="${user//\"/\\\"}"
        printf 'user = "%s"\n' "$user" | curl -K - "$@"
    else
        curl "$@"
    fi
}

# Whether the running node's security mode is the one asked for (a node started with
# security off would otherwise pass the health check and silently accept any password).
security_matches() {  # $1 = node dir
    [ "$(cat "$1/.wwts-security" 2>/dev/null || echo false)" = "$SECURITY" ]
}

# File-realm users of a secured node: written before start (no security index needed, and
# this distribution cannot create one); re-created when the credentials change, which
# takes effect after down + up.
write_users() {  # $1 = ES_HOME, $2 = node dir
    local home="$1" node="$2"
    [ "${#SECURE_PASSWORD}" -ge 6 ] && [ "${#NOPRIV_PASSWORD}" -ge 6 ] ||
        die "WWTS_ES_SECURE_PASSWORD and WWTS_ES_NOPRIV_PASSWORD need at least 6 characters"
    [ "$SECURE_USER" != "$NOPRIV_USER" ] || die "WWTS_ES_SECURE_USER and WWTS_ES_NOPRIV_USER must differ"
    cat >"$node/config/roles.yml" <<EOF
# generated by deploy/elk/local/es.sh: may ask for cluster health, may write nothing
${NOPRIV_ROLE}:
  cluster: [ "monitor" ]
EOF
    if is_root; then
        chown "$ES_USER:$ES_USER" "$node/config/roles.yml"
    fi
    # each elasticsearch-users call is a JVM start (~3-6 s): skip them when the users are
    # already there with these credentials (a fingerprint of them, mode 600)
    local fingerprint
    fingerprint="$(printf '%s\n' "$SECURE_USER" "$SECURE_PASSWORD" "$NOPRIV_USER" "$NOPRIV_PASSWORD" "$NOPRIV_ROLE" |
        sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$node/.wwts-users" 2>/dev/null)" = "$fingerprint" ] &&
        grep -q "^${SECURE_USER}:" "$node/config/users" 2>/dev/null &&
        grep -q "^${NOPRIV_USER}:" "$node/config/users" 2>/dev/null; then
        return 0
    fi
    rm -f "$node/.wwts-users"
    : >"$node/config/users"  # the tool wants both files to exist
    : >"$node/config/users_roles"
    if is_root; then
        chown -R "$ES_USER:$ES_USER" "$node/config"
    fi
    local java_home="$JAVA_HOME_FOUND"
    as_node_user env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$node/config" \
        "$home/bin/elasticsearch-users" useradd "$SECURE_USER" -p "$SECURE_PASSWORD" -r superuser >&2 ||
        die "could not create the file-realm user $SECURE_USER"
    as_node_user env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$node/config" \
        "$home/bin/elasticsearch-users" useradd "$NOPRIV_USER" -p "$NOPRIV_PASSWORD" -r "$NOPRIV_ROLE" >&2 ||
        die "could not create the file-realm user $NOPRIV_USER"
    (umask 077 && printf '%s\n' "$fingerprint" >"$node/.wwts-users")
}

write_config() {  # $1 = ES_HOME, $2 = node dir
    local home="$1" node="$2"
    mkdir -p "$node/config" "$node/data" "$node/logs" "$node/tmp"
    if [ "$(cat "$node/config/.dist-version" 2>/dev/null)" != "$ES_VERSION" ]; then
        # fresh copy of the distribution's config (jvm.options, log4j2.properties, ...)
        find "$node/config" -mindepth 1 -maxdepth 1 ! -name elasticsearch.keystore -exec rm -rf {} +
        cp -R "$home/config/." "$node/config/"
        echo "$ES_VERSION" >"$node/config/.dist-version"
    fi
    cat >"$node/config/elasticsearch.yml" <<EOF
# generated by deploy/elk/local/es.sh; rewritten on every 'up'
cluster.name: ${CLUSTER_NAME}
node.name: wwts-local
path.data: ${node}/data
path.logs: ${node}/logs
network.host: ${HOST}
http.port: ${PORT}
transport.port: ${TRANSPORT_PORT}
discovery.type: single-node
xpack.security.enabled: ${SECURITY}
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
action.auto_create_index: true
EOF
    if [ "$SECURITY" = true ]; then
        # authentication over plain HTTP on loopback; single-node discovery needs no transport TLS
        cat >>"$node/config/elasticsearch.yml" <<EOF
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
EOF
    fi
    echo "$SECURITY" >"$node/.wwts-security"
    # keep GC logs and heap dumps inside the node dir (the distribution dir is read-only to us)
    cat >"$node/config/jvm.options.d/wwts.options" <<EOF
-Xlog:disable
-Xlog:all=warning:stderr:utctime,level,tags
-XX:HeapDumpPath=${node}/data
-XX:ErrorFile=${node}/logs/hs_err_pid%p.log
-XX:-AlwaysPreTouch
EOF
    if is_root; then
        chown -R "$ES_USER:$ES_USER" "$node"
    fi
}

show_logs() {  # $1 = node dir
    local node="$1" f
    for f in "$node/logs/startup.out" "$node/logs/${CLUSTER_NAME}.log"; do
        if [ -s "$f" ]; then
            printf -- '----- tail of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

stop_pid() {  # $1 = pid; TERM, wait, then KILL
    local pid="$1" _
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    log "node $pid did not stop in 60 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 10); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
}

lock() {  # $1 = lock file; serialises concurrent runs for the same port (fd 9)
    exec 9>"$1"
    if command -v flock >/dev/null 2>&1; then
        flock -w 600 9 || die "timed out waiting for lock $1"
    fi
}

lock_dist() {  # $1 = lock file; serialises download + unpack across ports (fd 8)
    exec 8>"$1"
    if command -v flock >/dev/null 2>&1; then
        flock -w 900 8 || die "timed out waiting for lock $1"
    fi
}

cmd_up() {
    ensure_user
    mkdir -p "$CACHE_DIR"
    local rdir node
    rdir="$(run_dir)"
    node="$rdir/node-${PORT}"
    mkdir -p "$rdir"
    lock "$rdir/.lock-${PORT}"

    local pid
    pid="$(node_pid "$node")"
    if [ -n "$pid" ]; then
        security_matches "$node" ||
            die "the node on port $PORT runs with security $( [ "$SECURITY" = true ] && echo off || echo on); stop it first (WWTS_ES_PORT=$PORT $0 down)"
        if healthy; then
            log "node already running (pid $pid)"
            printf '%s\n' "$URL"
            return 0
        fi
    else
        local other
        other="$(answering_cluster)"
        if [ -n "$other" ]; then
            if [ "$other" = "$CLUSTER_NAME" ] && security_matches "$node" && healthy; then
                log "node for port $PORT already running"
                printf '%s\n' "$URL"
                return 0
            fi
            die "port $PORT is already in use by something else (cluster '${other}'); set WWTS_ES_PORT"
        fi
    fi

    local java_home zip home
    java_home="$(find_java)"
    JAVA_HOME_FOUND="$java_home"
    lock_dist "$rdir/.lock-dist"
    zip="$(fetch_zip)"
    home="$(unpack "$zip" "$rdir")"
    exec 8>&-
    if is_root; then
        chown "$ES_USER:$ES_USER" "$rdir" 2>/dev/null || true
        chmod 755 "$rdir"
    fi

    if [ -z "$pid" ]; then
        write_config "$home" "$node"
        if [ "$SECURITY" = true ]; then
            write_users "$home" "$node"
        fi
        rm -f "$node/es.pid"
        log "starting Elasticsearch ${ES_VERSION} on $URL (java: $java_home, dir: $node, security: $SECURITY)"
        local rc=0
        (
            cd "$node"
            # The shell (not the node user) opens startup.out; the node only inherits the fd.
            exec >"$node/logs/startup.out" 2>&1 </dev/null 9>&-
            as_node_user env \
                ES_JAVA_HOME="$java_home" \
                ES_PATH_CONF="$node/config" \
                ES_TMPDIR="$node/tmp" \
                ES_JAVA_OPTS="${ES_JAVA_OPTS:-$JAVA_OPTS_DEFAULT}" \
                timeout "$TIMEOUT" "$home/bin/elasticsearch" -d -p "$node/es.pid"
        ) || rc=$?
        if [ "$rc" -ne 0 ]; then
            log "Elasticsearch failed to start (exit $rc)"
            show_logs "$node"
            pid="$(node_pid "$node")"
            [ -n "$pid" ] && stop_pid "$pid"
            exit 1
        fi
    fi

    local deadline=$((SECONDS + TIMEOUT))
    until healthy; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "Elasticsearch did not become healthy within ${TIMEOUT}s"
            show_logs "$node"
            pid="$(node_pid "$node")"
            [ -n "$pid" ] && stop_pid "$pid"
            exit 1
        fi
        if [ -z "$(node_pid "$node")" ]; then
            log "Elasticsearch exited during startup"
            show_logs "$node"
            exit 1
        fi
        sleep 1
    done
    log "Elasticsearch ${ES_VERSION} is up (pid $(node_pid "$node"))"
    printf '%s\n' "$URL"
}

cmd_down() {
    local rdir node pid
    if is_root && ! id -u "$ES_USER" >/dev/null 2>&1; then
        log "no node for port $PORT"
        return 0
    fi
    [ -d "$CACHE_DIR" ] || [ -n "${WWTS_ES_RUN_DIR:-}" ] || [ -d /var/lib/wwts-es ] ||
        { log "no node for port $PORT"; return 0; }
    rdir="$(run_dir)"
    node="$rdir/node-${PORT}"
    [ -d "$node" ] || { log "no node for port $PORT"; return 0; }
    lock "$rdir/.lock-${PORT}"
    pid="$(node_pid "$node")"
    if [ -z "$pid" ]; then
        log "no node running for port $PORT"
        rm -f "$node/es.pid"
        return 0
    fi
    log "stopping Elasticsearch (pid $pid, port $PORT)"
    stop_pid "$pid"
    rm -f "$node/es.pid"
    log "stopped"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    url) printf '%s\n' "$URL" ;;
    -h | --help | help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        ;;
    *)
        echo "usage: $0 {up|down|url}" >&2
        exit 2
        ;;
esac
