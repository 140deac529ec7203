#!/usr/bin/env bash
# Integration test harness (make check-integration).
#   bash tests/integration/harness.sh BUILD TESTBIN...
# In a fresh temporary directory: a private PostgreSQL on a free port, the TLS files, a
# foliod.conf, the migrations and the demo hotel; BUILD/foliod in the background on another
# free port; then each TESTBIN with
#   FOLIOD_TEST_HOST FOLIOD_TEST_PORT FOLIOD_TEST_TLS FOLIOD_TEST_DIR FOLIOD_TEST_BIN
#   FOLIOD_TEST_CONF FOLIOD_TEST_PG_STOP FOLIOD_TEST_PG_START FOLIOD_TEST_PG_CONNINFO
# Afterwards foliod gets SIGTERM and must exit 0 within 15 s with no sanitizer report in its
# log. Everything is stopped and removed on exit (FOLIOD_KEEP=1 keeps the directory; it is also
# kept when something failed). FOLIOD_TEST_TIMEOUT bounds each test binary (default 300 s).
set -uo pipefail

FE_PROG=harness
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"

[ $# -ge 1 ] || fe_die "usage: bash tests/integration/harness.sh BUILD TESTBIN..."
BUILD=$1
shift
fe_need_foliod "$BUILD"
BUILD=$(fe_abs "$BUILD")
fe_need_demo_hotel
TESTS=()
for t in "$@"; do
    [ -x "$t" ] || fe_die "test binary $t does not exist or is not executable"
    case $t in */*) TESTS+=("$(fe_abs "$t")") ;; *) TESTS+=("$(command -v "$t")") ;; esac
done
[ ${#TESTS[@]} -gt 0 ] || fe_say "warning: no test binaries given"
cd "$FOLIOD_ROOT" || exit 1

TEST_TIMEOUT=${FOLIOD_TEST_TIMEOUT:-300}
# Sanitizer reports go to foliod.log; defaults unless the caller chose otherwise.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

T=$(mktemp -d "${TMPDIR:-/tmp}/foliod-test.XXXXXX") || fe_die "mktemp failed"
# The postgres user must be able to reach $T/pg when this runs as root.
chmod 711 "$T"
PG_DIR=$T/pg
TLS_DIR=$T/tls
CONF=$T/foliod.conf
LOG=$T/foliod.log
FOLIOD_PID=
PG_STARTED=0
DAEMON_PROBLEMS=()
TEST_PID=
passed=0
failed=0
ran=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$TEST_PID" ] && kill -0 "$TEST_PID" 2>/dev/null; then
        fe_stop_child "$TEST_PID" TERM 10 || true
    fi
    if [ -n "$FOLIOD_PID" ] && kill -0 "$FOLIOD_PID" 2>/dev/null; then
        fe_stop_child "$FOLIOD_PID" TERM 15 || fe_say "foliod did not exit within 15 s; killed it"
    fi
    if [ "$PG_STARTED" = 1 ]; then
        fe_pg stop "$PG_DIR" 2>/dev/null || {
            fe_say "could not stop PostgreSQL in $PG_DIR"
            rc=1
        }
    fi
    if [ "$rc" != 0 ]; then
        if [ -s "$LOG" ]; then
            fe_say "last 50 lines of $LOG:"
            tail -n 50 "$LOG" >&2
        fi
        fe_say "kept $T for inspection"
    elif [ "${FOLIOD_KEEP:-0}" = 1 ]; then
        fe_say "kept $T (FOLIOD_KEEP=1)"
    else
        # The cluster may have been relocated (pg.sh); destroy removes both.
        fe_pg destroy "$PG_DIR" 2>/dev/null || true
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

setup_fail() {
    fe_say "set-up failed: $*"
    exit 1
}

# --- PostgreSQL on a free port (another run may take it between the check and the bind) ---
export FOLIOD_PG_FAST=1
fe_pg init "$PG_DIR" 2>"$T/pg-init.log" || {
    cat "$T/pg-init.log" >&2
    setup_fail "pg.sh init"
}
PG_PORT=
for attempt in 1 2 3 4 5; do
    port=$(fe_pick_port)
    PG_STARTED=1
    if conninfo=$(fe_pg start "$PG_DIR" "$port" 2>"$T/pg-start.log"); then
        PG_PORT=$port
        break
    fi
    PG_STARTED=0
    fe_say "PostgreSQL did not start on port $port (attempt $attempt)"
done
[ -n "$PG_PORT" ] || {
    cat "$T/pg-start.log" >&2
    setup_fail "could not start PostgreSQL"
}
unset FOLIOD_PG_FAST

# GHOST: a certificate of the development CA for an outlet that does not exist; OFFLINE: one
# for an outlet that test_pos creates disabled; AUNAPOS and AUNABAR: outlets of test_audit's
# own property.
fe_tls "$TLS_DIR" "${FOLIOD_DEMO_OUTLETS[@]}" GHOST OFFLINE AUNAPOS AUNABAR 2>"$T/tls.log" || {
    cat "$T/tls.log" >&2
    setup_fail "tls.sh"
}

SERVER_EXTRA="idle_timeout = 5
handshake_timeout = 3"
AUTH_SECTION="[auth]
login_delay = 200"

fe_write_conf "$CONF" 7443 "$TLS_DIR" "$conninfo" "$SERVER_EXTRA" "$AUTH_SECTION"
fe_migrate "$BUILD" "$CONF" >>"$LOG" 2>&1 || setup_fail "foliod --migrate (see $LOG)"
fe_import "$BUILD" "$CONF" "$FOLIOD_DEMO_HOTEL" >>"$LOG" 2>&1 || setup_fail "foliod --import (see $LOG)"

# --- foliod on a free port ---
FOLIOD_PORT=
for attempt in 1 2 3; do
    port=$(fe_pick_port "$PG_PORT")
    fe_write_conf "$CONF" "$port" "$TLS_DIR" "$conninfo" "$SERVER_EXTRA" "$AUTH_SECTION"
    printf -- '--- harness: starting foliod on 127.0.0.1:%s\n' "$port" >>"$LOG"
    "$BUILD/foliod" -c "$CONF" >>"$LOG" 2>&1 &
    FOLIOD_PID=$!
    fe_wait_listen 127.0.0.1 "$port" 20 "$FOLIOD_PID"
    case $? in
    0)
        FOLIOD_PORT=$port
        break
        ;;
    1) setup_fail "foliod did not listen on 127.0.0.1:$port within 20 s" ;;
    *)
        st=0
        wait "$FOLIOD_PID" || st=$?
        FOLIOD_PID=
        fe_say "foliod exited with status $st before listening on port $port (attempt $attempt)"
        ;;
    esac
done
[ -n "$FOLIOD_PORT" ] || setup_fail "foliod would not start (see $LOG)"
fe_say "PostgreSQL on port $PG_PORT, foliod on 127.0.0.1:$FOLIOD_PORT, directory $T"

q() { printf '%q' "$1"; }
export FOLIOD_TEST_HOST=127.0.0.1
export FOLIOD_TEST_PORT=$FOLIOD_PORT
export FOLIOD_TEST_TLS=$TLS_DIR
export FOLIOD_TEST_DIR=$T
export FOLIOD_TEST_BIN=$BUILD/foliod
export FOLIOD_TEST_CONF=$CONF
FOLIOD_TEST_PG_STOP="bash $(q "$FOLIOD_ROOT/scripts/pg.sh") stop $(q "$PG_DIR")"
FOLIOD_TEST_PG_START="bash $(q "$FOLIOD_ROOT/scripts/pg.sh") start $(q "$PG_DIR") $PG_PORT"
export FOLIOD_TEST_PG_STOP FOLIOD_TEST_PG_START
export FOLIOD_TEST_PG_CONNINFO=$conninfo

# --- the tests ---
for t in "${TESTS[@]}"; do
    name=$(basename "$t")
    echo "== $name"
    start=$SECONDS
    # In the background so that a Ctrl-C (trapped) interrupts the wait at once.
    timeout -k 10 "$TEST_TIMEOUT" "$t" &
    TEST_PID=$!
    st=0
    wait "$TEST_PID" || st=$?
    TEST_PID=
    secs=$((SECONDS - start))
    if [ "$st" = 0 ]; then
        passed=$((passed + 1))
        echo "-- $name: ok (${secs}s)"
    else
        failed=$((failed + 1))
        if [ "$st" = 124 ] || [ "$st" = 137 ]; then
            echo "-- $name: FAILED (timed out after ${TEST_TIMEOUT}s)"
        else
            echo "-- $name: FAILED (exit status $st, ${secs}s)"
        fi
    fi
    ran=$((ran + 1))
    if ! kill -0 "$FOLIOD_PID" 2>/dev/null; then
        DAEMON_PROBLEMS+=("foliod was no longer running after $name; $((${#TESTS[@]} - ran)) test(s) not run")
        break
    fi
done

# --- foliod must stop cleanly ---
if [ -n "$FOLIOD_PID" ]; then
    if ! kill -0 "$FOLIOD_PID" 2>/dev/null; then
        st=0
        wait "$FOLIOD_PID" 2>/dev/null || st=$?
        DAEMON_PROBLEMS+=("foliod died during the tests (status $st)")
    elif ! fe_stop_child "$FOLIOD_PID" TERM 15; then
        DAEMON_PROBLEMS+=("foliod did not exit within 15 s of SIGTERM (killed)")
    elif [ "$FE_EXIT" != 0 ]; then
        DAEMON_PROBLEMS+=("foliod exited with status $FE_EXIT after SIGTERM")
    fi
    FOLIOD_PID=
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$LOG" 2>/dev/null; then
    DAEMON_PROBLEMS+=("sanitizer report in $LOG")
    grep -nE -m 5 'ERROR: (Address|Leak)Sanitizer|SUMMARY: |runtime error' "$LOG" >&2
fi
for p in "${DAEMON_PROBLEMS[@]}"; do fe_say "$p"; done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#DAEMON_PROBLEMS[@]} = 0 ]
