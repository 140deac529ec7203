#!/usr/bin/env bash
# make run: the demo hotel on a private PostgreSQL, foliod in the foreground.
#   bash scripts/run.sh [BUILD]        (BUILD defaults to build; make run builds it first)
# Creates or reuses, under var/: pg/ (the cluster), tls/ (development certificates) and
# foliod.conf. Ctrl-C stops foliod, then PostgreSQL if this script started it.
# Environment: FOLIOD_PG_PORT (default 7432, or the port var/foliod.conf already uses),
# FOLIOD_REIMPORT=1 (load the demo hotel again even if it was loaded into this cluster).
set -euo pipefail

BUILD=${1:-build}
[ -d "$BUILD" ] || {
    echo "run.sh: $BUILD: no such directory; build first (make)" >&2
    exit 1
}
BUILD=$(cd "$BUILD" && pwd -P)
FE_PROG=run.sh
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$FOLIOD_ROOT"

bash scripts/deps.sh
fe_need_foliod "$BUILD"
fe_need_demo_hotel

VAR=$FOLIOD_ROOT/var
PG_DIR=$VAR/pg
TLS_DIR=$VAR/tls
CONF=$VAR/foliod.conf
mkdir -p "$VAR"

FOLIOD_PID=
FE_PG_STARTED=0
# shellcheck disable=SC2317  # (called from traps)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$FOLIOD_PID" ] && kill -0 "$FOLIOD_PID" 2>/dev/null; then
        fe_say "stopping foliod"
        fe_stop_child "$FOLIOD_PID" TERM 30 || fe_say "foliod did not stop within 30 s; killed it"
    fi
    if [ "$FE_PG_STARTED" = 1 ]; then
        fe_say "stopping PostgreSQL"
        fe_pg_down "$PG_DIR" || rc=1
    fi
    exit "$rc"
}
# If our output goes to a pipe whose reader died with Ctrl-C (make run | tee), keep going:
# stopping PostgreSQL matters more than the messages.
trap '' PIPE
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Does var/foliod.conf (if any) use the private cluster, and on which port?
PRIVATE_PG=1
PG_PORT=${FOLIOD_PG_PORT:-7432}
if [ -f "$CONF" ]; then
    conninfo=$(fe_conf_get "$CONF" database conninfo)
    hosts=(" host=$PG_DIR/run ")
    [ -e "$PG_DIR" ] && hosts+=(" host=$(readlink -f "$PG_DIR")/run ")
    PRIVATE_PG=0
    for h in "${hosts[@]}"; do
        case " $conninfo " in *"$h"*) PRIVATE_PG=1 ;; esac
    done
    conf_port=$(printf ' %s ' "$conninfo" | sed -n 's/.* port=\([0-9][0-9]*\) .*/\1/p')
    if [ "$PRIVATE_PG" = 1 ] && [ -n "$conf_port" ] && [ "$conf_port" != "$PG_PORT" ]; then
        [ -n "${FOLIOD_PG_PORT:-}" ] &&
            fe_say "warning: $CONF uses port $conf_port, not FOLIOD_PG_PORT=$FOLIOD_PG_PORT (remove the file to regenerate it)"
        PG_PORT=$conf_port
    fi
fi

if [ "$PRIVATE_PG" = 1 ]; then
    fe_pg_up "$PG_DIR" "$PG_PORT" || fe_die "could not start PostgreSQL in $PG_DIR"
    running_port=$(printf ' %s ' "$FE_PG_CONNINFO" | sed -n 's/.* port=\([0-9][0-9]*\) .*/\1/p')
    [ "$running_port" = "$PG_PORT" ] ||
        fe_die "PostgreSQL in $PG_DIR already runs on port $running_port, not $PG_PORT (stop it: bash scripts/pg.sh stop var/pg)"
else
    fe_say "$CONF names an external database; not starting the private cluster"
fi

fe_tls "$TLS_DIR" "${FOLIOD_DEMO_OUTLETS[@]}"

if [ ! -f "$CONF" ]; then
    fe_write_conf "$CONF" 7443 "$TLS_DIR" "$FE_PG_CONNINFO"
    fe_say "wrote $CONF"
fi

fe_migrate "$BUILD" "$CONF" || exit 1

# Load the demo hotel once per cluster, again when it or the migrations change.
if [ "$PRIVATE_PG" = 1 ]; then marker=$PG_DIR/.demo-import; else marker=$VAR/.demo-import; fi
digest=$(fe_demo_digest)
if [ "${FOLIOD_REIMPORT:-0}" = 1 ] || [ "$(cat "$marker" 2>/dev/null || true)" != "$digest" ]; then
    fe_import "$BUILD" "$CONF" "$FOLIOD_DEMO_HOTEL" || exit 1
    printf '%s\n' "$digest" >"$marker"
else
    fe_say "demo hotel already loaded (FOLIOD_REIMPORT=1 loads it again)"
fi

LISTEN_HOST=$(fe_conf_get "$CONF" server listen_host 127.0.0.1)
LISTEN_PORT=$(fe_conf_get "$CONF" server listen_port 7443)
REL_BUILD=${BUILD#"$FOLIOD_ROOT"/}

# foliod runs in its own session, so a Ctrl-C on the terminal reaches only this script, which
# passes it on once; it starts with default SIGINT handling (bash would have it ignored).
launch=("$BUILD/foliod" -c "$CONF")
if env --default-signal=INT true 2>/dev/null; then launch=(env "--default-signal=INT,QUIT" "${launch[@]}"); fi
if command -v setsid >/dev/null 2>&1; then launch=(setsid "${launch[@]}"); fi
"${launch[@]}" &
FOLIOD_PID=$!
# shellcheck disable=SC2317  # (called from traps)
forward() { kill "-$1" "$FOLIOD_PID" 2>/dev/null || true; }
trap 'forward INT' INT
trap 'forward TERM' TERM

if fe_wait_listen "$LISTEN_HOST" "$LISTEN_PORT" 20 "$FOLIOD_PID"; then
    cat >&2 <<EOF

  foliod is listening on $LISTEN_HOST:$LISTEN_PORT (JSON-RPC over TLS; CA var/tls/ca.crt)
  configuration:  var/foliod.conf
  database:       ${FE_PG_CONNINFO:-$(fe_conf_get "$CONF" database conninfo)}
  demo logins (user / password, demo only):
      cashier / cashier    auditor / auditor    manager / manager    admin / admin
  outlet certificates: var/tls/outlet-CODE.crt and .key for ${FOLIOD_DEMO_OUTLETS[*]}
  try:
      $REL_BUILD/folioctl --ca var/tls/ca.crt ping
  Ctrl-C stops foliod$([ "$FE_PG_STARTED" = 1 ] && printf ' and PostgreSQL').

EOF
elif kill -0 "$FOLIOD_PID" 2>/dev/null; then
    fe_say "warning: foliod is not listening on $LISTEN_HOST:$LISTEN_PORT after 20 s"
fi

# Wait for foliod; a trapped signal interrupts wait, so wait again until it has exited.
rc=0
while :; do
    st=0
    wait "$FOLIOD_PID" || st=$?
    kill -0 "$FOLIOD_PID" 2>/dev/null && continue
    if [ "$st" -gt 128 ]; then
        # Interrupted by a signal, or foliod died of one: a second wait tells which.
        st2=0
        wait "$FOLIOD_PID" 2>/dev/null || st2=$?
        [ "$st2" = 127 ] || st=$st2
    fi
    rc=$st
    break
done
FOLIOD_PID=
[ "$rc" = 0 ] || fe_say "foliod exited with status $rc"
exit "$rc"
