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
source deploy/common.sh
need_tools nginx openssl curl

make_certificate
cargo build --release --quiet
start_server server
start_nginx "$HTTPS_PORT" "server $ADDR;"

cat <<INFO

SSE server on http://$ADDR/, behind nginx on:

    https://127.0.0.1:$HTTPS_PORT/    (self-signed certificate: accept the browser's warning)

Watch the stream over HTTP/2 (-k accepts the self-signed certificate, -N prints each frame at once):

    curl --http2 -k -N -s -i https://127.0.0.1:$HTTPS_PORT/events

Broadcast a message through the proxy:

    curl --http2 -k -s -d message=hello https://127.0.0.1:$HTTPS_PORT/send

Ctrl-C stops both.
INFO
wait_for_ctrl_c
