#!/usr/bin/env bash
# A small cluster on loopback: redis-server, three SSE server instances sharing one event log in
# it, and nginx in front (HTTPS + HTTP/2) dealing connections to the three. Ctrl-C stops all.
#
#   deploy/run-cluster.sh           # HTTPS_PORT=9443 REDIS_PORT=6390 INSTANCES=2 also work
#
# Needs redis-server, nginx, openssl and curl (Debian: apt-get install redis-server nginx
# openssl curl). Redis runs in a temp dir on its own port, with no persistence: stopping the
# cluster forgets every message.
#
# Stopping Redis (redis-cli -p 6390 shutdown) is part of the lesson: nginx and the instances keep
# running, /send answers 503 and streams keep ticking; Enter in this terminal starts Redis again
# (empty), and /send works again with ids still rising.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTPS_PORT="${HTTPS_PORT:-8443}"
REDIS_PORT="${REDIS_PORT:-6390}"
INSTANCES="${INSTANCES:-3}"
source deploy/common.sh
need_tools redis-server nginx openssl curl
# Both checked before anything starts: a taken port fails at once, named.
need_free_port "$REDIS_PORT" REDIS_PORT
need_free_port "$HTTPS_PORT" HTTPS_PORT
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
REDIS_COMMAND=("$(find_tool redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$RUNDIR" --logfile "$RUNDIR/redis.log")

# 1. Redis: loopback only, its own port, nothing saved to disk. Sets REDIS_PID once it answers;
# says why and returns 1 if it does not.
start_redis() {
    "${REDIS_COMMAND[@]}" &
    REDIS_PID=$!
    PIDS="$PIDS $REDIS_PID"
    local pong=""
    # Up to 30 s: a busy machine can be slow to start a process.
    for _ in $(seq 300); do
        kill -0 "$REDIS_PID" 2>/dev/null || break
        # PING spoken by hand over bash's /dev/tcp: a RESP inline command, answered "+PONG".
        # (The braces take the "connection refused" bash prints while Redis is still starting.)
        if { exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; } 2>/dev/null; then
            printf 'PING\r\n' >&3
            read -r -t 1 pong <&3 || true
            exec 3<&-
            # Ours answering, not another Redis that took the port meanwhile.
            [ "${pong%$'\r'}" = "+PONG" ] && kill -0 "$REDIS_PID" 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    echo "error: redis-server did not start on $REDIS_PORT:" >&2
    tail -n 3 "$RUNDIR/redis.log" >&2 2>/dev/null || true
    return 1
}
start_redis || exit 1

# 2. The instances, each on a free port, all on the same Redis key.
make_certificate
cargo build --release --quiet
UPSTREAMS=""
ADDRS=()
SERVICES="" # the instances and nginx: not Redis, which may stop and start again
for n in $(seq "$INSTANCES"); do
    start_server "instance-$n" --redis "$REDIS_URL" --redis-key sse
    ADDRS+=("$ADDR")
    UPSTREAMS="$UPSTREAMS server $ADDR;"
    SERVICES="$SERVICES ${PIDS##* }"
done

# 3. nginx in front of them all.
start_nginx "$HTTPS_PORT" "$UPSTREAMS"
SERVICES="$SERVICES ${PIDS##* }"

# Every port is bound and answering by now.
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

To see Redis fail, stop it (the rest keeps running; this terminal says how to start it again):

    redis-cli -p $REDIS_PORT shutdown

Ctrl-C stops everything.
INFO

# Until Ctrl-C (the trap cleans up). Redis stopping is reported and can be undone; any other
# process stopping ends the script.
redis_up=1
while true; do
    # shellcheck disable=SC2086
    if [ "$redis_up" = 1 ]; then wait -n $REDIS_PID $SERVICES || true; else wait -n $SERVICES || true; fi
    all_up=1
    for pid in $SERVICES; do kill -0 "$pid" 2>/dev/null || all_up=0; done
    if [ "$all_up" = 1 ] && [ "$redis_up" = 1 ] && ! kill -0 "$REDIS_PID" 2>/dev/null; then
        redis_up=0
        # Keys pressed while Redis was running are not the answer to what follows.
        while read -r -t 0.01 _; do :; done
        cat <<STOPPED

Redis stopped. nginx and the instances keep running: /send answers 503, streams keep ticking.
Press Enter here to start Redis again (empty: this recipe saves nothing).
STOPPED
        while [ "$redis_up" = 0 ] && read -r _; do
            if start_redis; then
                redis_up=1
                echo "Redis is back on $REDIS_URL: /send works again, and ids go on rising."
            else
                echo "Press Enter to try again."
            fi
        done
        if [ "$redis_up" = 0 ]; then
            echo "(nothing to read Enter from: start Redis yourself with ${REDIS_COMMAND[*]})"
        fi
        continue
    fi
    # The temp dir goes with the exit: show the end of the logs first.
    echo "error: a process stopped on its own; the last lines of the logs:" >&2
    tail -n 3 "$RUNDIR"/instance-*.log "$RUNDIR/redis.log" >&2 || true
    exit 1
done
