#!/usr/bin/env bash
# Runs the SSE server behind nginx: HTTPS + HTTP/2 on https://127.0.0.1:8443/ (or $HTTPS_PORT),
# proxying to the server on a free loopback port. Ctrl-C stops both and deletes the temp dir.
#
#   deploy/run-behind-nginx.sh                  # HTTPS_PORT=9443 INTERVAL_MS=500 also work
#
# Needs nginx, openssl and curl (Debian: apt-get install nginx openssl curl). Runs as any user.
set -euo pipefail
cd "$(dirname "$0")/.."

HTTPS_PORT="${HTTPS_PORT:-8443}"

# nginx lives in /usr/sbin on Debian, which is not on an ordinary user's PATH.
NGINX="$(PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v nginx || true)"
for tool in openssl curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
[ -n "$NGINX" ] || { echo "error: nginx not found (Debian: apt-get install nginx)" >&2; exit 1; }

RUNDIR="$(mktemp -d "${TMPDIR:-/tmp}/sse-nginx.XXXXXX")"
# Started by root, nginx runs its workers as nobody: they must be able to reach their temp dirs.
chmod 711 "$RUNDIR"
SERVER_PID=""
NGINX_PID=""

cleanup() {
    trap - EXIT INT TERM
    # SIGTERM: the server dies at once; the nginx master stops its workers, then itself.
    for pid in $NGINX_PID $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $NGINX_PID $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$RUNDIR"
    echo "stopped; removed $RUNDIR" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. A self-signed certificate for localhost and 127.0.0.1, valid for a week.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$RUNDIR/key.pem" -out "$RUNDIR/cert.pem" 2>/dev/null

# 2. The server, on a free loopback port. Its first stdout line carries the real port.
cargo build --release --quiet
HOST=127.0.0.1 PORT=0 cargo run --release --quiet >"$RUNDIR/server.out" &
SERVER_PID=$!   # cargo run replaces itself with the server: this is the server's PID
UPSTREAM=""
for _ in $(seq 100); do
    UPSTREAM="$(sed -n 's|^Server running at http://\(127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$RUNDIR/server.out")"
    [ -n "$UPSTREAM" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "error: the server did not start" >&2; exit 1; }
    sleep 0.1
done
[ -n "$UPSTREAM" ] || { echo "error: no startup line from the server" >&2; exit 1; }

# 3. nginx with deploy/nginx.conf, placeholders filled in, in the foreground of a background job.
sed -e "s|__LISTEN_PORT__|$HTTPS_PORT|g" -e "s|__UPSTREAM__|$UPSTREAM|g" \
    -e "s|__CERT__|$RUNDIR/cert.pem|g" -e "s|__KEY__|$RUNDIR/key.pem|g" \
    -e "s|__RUNDIR__|$RUNDIR|g" deploy/nginx.conf >"$RUNDIR/nginx.conf"
"$NGINX" -p "$RUNDIR" -c "$RUNDIR/nginx.conf" -e stderr &
NGINX_PID=$!
listening=""
for _ in $(seq 100); do
    kill -0 "$NGINX_PID" 2>/dev/null || { echo "error: nginx did not start (port $HTTPS_PORT taken?)" >&2; exit 1; }
    # A full HTTPS request, so that it is our nginx answering and not something else on the port.
    curl -k -s -o /dev/null --max-time 1 "https://127.0.0.1:$HTTPS_PORT/" && { listening=yes; break; }
    sleep 0.1
done
[ -n "$listening" ] || { echo "error: nginx is not listening on $HTTPS_PORT" >&2; exit 1; }

cat <<INFO

SSE server on http://$UPSTREAM/, behind nginx on:

    https://127.0.0.1:$HTTPS_PORT/    (self-signed certificate: accept the browser's warning)

Watch the stream over HTTP/2 (-k accepts the self-signed certificate, -N prints each frame at once):

    curl --http2 -k -N -s -i https://127.0.0.1:$HTTPS_PORT/events

Broadcast a message through the proxy:

    curl --http2 -k -s -d message=hello https://127.0.0.1:$HTTPS_PORT/send

Ctrl-C stops both.
INFO

# Until Ctrl-C (the trap above cleans up), or until either process ends on its own.
wait -n "$SERVER_PID" "$NGINX_PID" || true
echo "error: the server or nginx stopped on its own" >&2
exit 1
