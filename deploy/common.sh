# Shared by deploy/run-behind-nginx.sh and deploy/run-cluster.sh (sourced, not run): a temp dir,
# a self-signed certificate, starting SSE server instances and nginx, and stopping them all.

# nginx and redis-server live in /usr/sbin on Debian, not on an ordinary user's PATH.
find_tool() {
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" || true
}

need_tools() {
    for tool in "$@"; do
        [ -n "$(find_tool "$tool")" ] || {
            echo "error: $tool not found (Debian: apt-get install nginx openssl curl redis-server)" >&2
            exit 1
        }
    done
}

RUNDIR="$(mktemp -d "${TMPDIR:-/tmp}/sse-deploy.XXXXXX")"
# Started by root, nginx runs its workers as nobody: they must be able to reach their temp dirs.
chmod 711 "$RUNDIR"
PIDS=""

cleanup() {
    trap - EXIT INT TERM
    # SIGTERM: a server dies at once; the nginx master stops its workers, then itself.
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUNDIR"
    echo "stopped; removed $RUNDIR" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A self-signed certificate for localhost and 127.0.0.1, valid for a week.
make_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$RUNDIR/key.pem" -out "$RUNDIR/cert.pem" 2>/dev/null
}

# start_server NAME [FLAGS...]: the release server on a free loopback port; sets ADDR to its
# HOST:PORT, read from its first stdout line.
start_server() {
    local name="$1"; shift
    # Created here, not by the background job's redirection, so the loop below never reads a
    # file that does not exist yet (`set -e` would end the script on sed's error).
    : >"$RUNDIR/$name.out"
    target/release/sse-server --host 127.0.0.1 --port 0 "$@" \
        >>"$RUNDIR/$name.out" 2>"$RUNDIR/$name.log" &
    local pid=$!
    PIDS="$PIDS $pid"
    ADDR=""
    # Up to 30 s: a busy machine can be slow to start a process.
    for _ in $(seq 300); do
        ADDR="$(sed -n 's|^Server running at http://\(127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$RUNDIR/$name.out")"
        [ -n "$ADDR" ] && return
        kill -0 "$pid" 2>/dev/null || { echo "error: $name did not start:" >&2; cat "$RUNDIR/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "error: no startup line from $name" >&2
    exit 1
}

# need_free_port PORT VARIABLE: fails at once, naming the port, if something on this machine
# listens on it already (connecting to it works). Checked before starting what would bind it:
# nginx keeps trying a taken port for 2.5 s, and curl would take the other server's answer for
# our nginx's.
need_free_port() {
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        exec 3<&-
        echo "error: port $1 is taken (something listens on 127.0.0.1:$1); choose another with $2=PORT" >&2
        exit 1
    fi
}

# start_nginx HTTPS_PORT "server A; server B": deploy/nginx.conf with its placeholders filled in.
start_nginx() {
    local port="$1" upstreams="$2"
    need_free_port "$port" HTTPS_PORT
    sed -e "s|__LISTEN_PORT__|$port|g" -e "s|server __UPSTREAM__;|$upstreams|g" \
        -e "s|__CERT__|$RUNDIR/cert.pem|g" -e "s|__KEY__|$RUNDIR/key.pem|g" \
        -e "s|__RUNDIR__|$RUNDIR|g" deploy/nginx.conf >"$RUNDIR/nginx.conf"
    "$(find_tool nginx)" -p "$RUNDIR" -c "$RUNDIR/nginx.conf" -e stderr &
    local pid=$!
    PIDS="$PIDS $pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { echo "error: nginx did not start (port $port taken?)" >&2; exit 1; }
        # A full HTTPS request, so that it is our nginx answering and not something else.
        curl -k -s -o /dev/null --max-time 1 "https://127.0.0.1:$port/" && return
        sleep 0.1
    done
    echo "error: nginx is not listening on $port" >&2
    exit 1
}

# Until Ctrl-C (the trap cleans up), or until one of the processes ends on its own.
wait_for_ctrl_c() {
    # shellcheck disable=SC2086
    wait -n $PIDS || true
    echo "error: a process stopped on its own (logs were in $RUNDIR)" >&2
    exit 1
}
