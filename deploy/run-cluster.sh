#!/usr/bin/env bash
# A small cluster on loopback: redis-server, three SSE server instances sharing one event log in
# it, and nginx in front (HTTPS + HTTP/2) dealing connections to the three. Ctrl-C stops all.
#
#   deploy/run-cluster.sh           # HTTPS_PORT=9443 REDIS_PORT=6390 INSTANCES=2 also work
#
# Needs redis-server, nginx, openssl and curl (Debian: apt-get install redis-server nginx
# openssl curl). Redis runs in a temp dir on its own port, with no persistence: stopping the
# cluster forgets every message.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTPS_PORT="${HTTPS_PORT:-8443}"
REDIS_PORT="${REDIS_PORT:-6390}"
INSTANCES="${INSTANCES:-3}"
source deploy/common.sh
need_tools redis-server nginx openssl curl

# 1. Redis: loopback only, its own port, nothing saved to disk.
"$(find_tool redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$RUNDIR" --logfile "$RUNDIR/redis.log" &
REDIS_PID=$!
PIDS="$PIDS $REDIS_PID"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
# Up to 30 s: a busy machine can be slow to start a process.
for _ in $(seq 300); do
    # Ours, not another Redis that has the port: ours would have stopped.
    kill -0 "$REDIS_PID" 2>/dev/null || { echo "error: redis-server did not start (port $REDIS_PORT taken?)" >&2; exit 1; }
    # PING spoken by hand over bash's /dev/tcp: a RESP inline command, answered "+PONG".
    # (The braces take the "connection refused" bash prints while Redis is still starting.)
    if { exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; } 2>/dev/null; then
        printf 'PING\r\n' >&3
        read -r -t 1 pong <&3 || true
        exec 3<&-
        [ "${pong%$'\r'}" = "+PONG" ] && break
    fi
    sleep 0.1
done
[ "${pong:-}" ] || { echo "error: redis-server did not answer on $REDIS_PORT" >&2; exit 1; }

# 2. The instances, each on a free port, all on the same Redis key.
make_certificate
cargo build --release --quiet
UPSTREAMS=""
ADDRS=()
for n in $(seq "$INSTANCES"); do
    start_server "instance-$n" --redis "$REDIS_URL" --redis-key sse
    ADDRS+=("$ADDR")
    UPSTREAMS="$UPSTREAMS server $ADDR;"
done

# 3. nginx in front of them all.
start_nginx "$HTTPS_PORT" "$UPSTREAMS"

cat <<INFO

Redis on $REDIS_URL; $INSTANCES instances sharing its log:
$(for n in "${!ADDRS[@]}"; do echo "    instance $((n + 1)): http://${ADDRS[$n]}/"; done)
behind nginx on:

    https://127.0.0.1:$HTTPS_PORT/    (self-signed certificate: accept the browser's warning)

A message sent to one instance reaches the streams of all. Watch instance 2 directly:

    curl -N -s http://${ADDRS[1]:-${ADDRS[0]}}/events

and send to instance 1:

    curl -s -d message=hello http://${ADDRS[0]}/send

Or through nginx, which picks an instance for each connection:

    curl --http2 -k -N -s https://127.0.0.1:$HTTPS_PORT/events
    curl --http2 -k -s -d message=hello https://127.0.0.1:$HTTPS_PORT/send

Ctrl-C stops everything.
INFO
wait_for_ctrl_c
