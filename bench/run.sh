#!/usr/bin/env bash
# make bench: foliod under load, measured next to the ceiling of the same PostgreSQL.
#   bash bench/run.sh [BUILD]      (BUILD holds the release foliod and loadgen; default build)
#
# Sets up what the integration harness sets up (a private PostgreSQL and foliod in a temporary
# directory on free ports, the demo hotel), runs foliod with a pool of 16 and warn-level logs,
# creates the bench hotel (loadgen setup: one room and in-house stay per connection, outlets
# BR0001..), then measures:
#   1. closed loop, one request in flight per connection: folio.post to the connection's own
#      in-house stay at 1, 16, 64 and 256 connections, and pos.post (idempotency keys, one
#      outlet with its own certificate per connection) at 16 and 64 when sql/*_pos.sql exists,
#      and pos.post from 64 outlets sharing the stays of 10 rooms (BENCH0010-BENCH0019);
#      interleaved with pgbench: the ceiling (bench/posting.pgbench, the bare SQL of a posting,
#      at 16 and 64 clients) and foliod's own SQL function called directly
#      (bench/folio_post.pgbench, 16 clients): ceiling, foliod, ceiling, foliod...;
#      BENCH_ROUNDS rounds, medians, the ratio to the ceiling;
#   2. open loop: BENCH_OPEN_RATE postings per second from BENCH_OPEN_CONNS connections (outlets
#      when POS exists) for BENCH_OPEN_SECONDS;
#   3. TLS handshakes per second; BENCH_RECONNECT outlets reconnecting at once (full
#      handshakes), then again resuming their TLS sessions; CPU of foliod, PostgreSQL, loadgen;
#   4. memory: foliod's peak RSS after all that, then a fresh foliod holding BENCH_IDLE_CONNS
#      idle TLS connections (RSS before and after, per connection);
#   5. the night audit of a 1,000-room hotel after BENCH_AUDIT_DAYS audited days of front-desk
#      work (bench/audit_day.sql): time, steps, memory, postings made during it (see below);
#   6. every posting loadgen saw acknowledged is counted in the database.
# The table goes to stdout and to bench/results/DATE-HOST.md and bench/results/latest.md.
# All traffic goes to 127.0.0.1; every step is bounded in time; the temporary directory is
# removed at the end (BENCH_KEEP=1 keeps it, and so does a failure).
#
# Environment (defaults): BENCH_SECONDS (10) per measured run, BENCH_ROUNDS (3),
# BENCH_CONNS ("1 16 64 256"), BENCH_KIND (stay; folio: a non_guest folio per connection),
# BENCH_OPEN_SECONDS (60), BENCH_OPEN_RATE (200), BENCH_OPEN_CONNS (20), BENCH_HS_SECONDS (10),
# BENCH_RECONNECT (1000), BENCH_IDLE_CONNS (10000), BENCH_RESULTS (bench/results; empty: no file),
# BENCH_PARTS ("closed open tls memory audit": the parts to run; the others are left out of the
# table, which then says so), BENCH_AUDIT_DAYS (30), BENCH_AUDIT_POST_RATE (50),
# BENCH_AUDIT_CHUNK (the audit hotel's settings.audit_chunk; unset: the default).
# SC2016: the Markdown has backquotes that must stay literal; SC2094: runs.log collects both
# the stderr and the copy (tee -a) of each run, appended, never read back in the same pipeline.
# shellcheck disable=SC2016,SC2094
set -uo pipefail

FE_PROG=bench
export FE_PROG
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"

BUILD=${1:-build}
fe_need_foliod "$BUILD"
[ -x "$BUILD/loadgen" ] || fe_die "$BUILD/loadgen is missing (make bench builds it)"
BUILD=$(fe_abs "$BUILD")
fe_need_demo_hotel
for tool in pgbench psql timeout; do
    command -v "$tool" >/dev/null 2>&1 || fe_die "$tool not found (bash scripts/deps.sh installs PostgreSQL 15)"
done
cd "$FOLIOD_ROOT" || exit 1

RUN_SECONDS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
read -r -a CONNS_LIST <<<"${BENCH_CONNS:-1 16 64 256}"
KIND=${BENCH_KIND:-stay}
OPEN_SECONDS=${BENCH_OPEN_SECONDS:-60}
OPEN_RATE=${BENCH_OPEN_RATE:-200}
OPEN_CONNS=${BENCH_OPEN_CONNS:-20}
HS_SECONDS=${BENCH_HS_SECONDS:-10}
HS_CONNECTORS=8
AUDIT_POST_CONNS=4
AUDIT_CHARGES=400 # restaurant and bar charges a day in the audit hotel
AUDIT_PAYMENTS=60 # payments on account a day
AUDIT_POST_RATE=${BENCH_AUDIT_POST_RATE:-50}
RECONNECT=${BENCH_RECONNECT:-1000}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_WANTED=$IDLE_CONNS
RESULTS_DIR=${BENCH_RESULTS-bench/results}
read -r -a PARTS <<<"${BENCH_PARTS:-closed open tls memory audit}"
declare -A PART
for p in "${PARTS[@]}"; do
    case $p in closed | open | tls | memory | audit) PART[$p]=1 ;; *) fe_die "bad BENCH_PARTS entry '$p' (closed open tls memory audit)" ;; esac
done
part() { [ "${PART[$1]:-0}" = 1 ]; }
POOL=16
START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
LOADGEN=$BUILD/loadgen
case $KIND in stay | folio) ;; *) fe_die "BENCH_KIND must be stay or folio" ;; esac

max_conns=0
for n in "${CONNS_LIST[@]}"; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then fe_die "bad BENCH_CONNS entry '$n'"; fi
    [ "$n" -gt "$max_conns" ] && max_conns=$n
done

# The idle test holds a descriptor per connection in foliod and another in loadgen: as many as
# allowed (above the hard limit only with the privilege to raise it).
for n in 1048576 262144 65536 "$(ulimit -Hn)"; do ulimit -n "$n" 2>/dev/null && break; done
FD_LIMIT=$(ulimit -n)
if [ "$FD_LIMIT" != unlimited ] && [ $((IDLE_CONNS + 200)) -gt "$FD_LIMIT" ]; then
    IDLE_CONNS=$((FD_LIMIT - 200))
    fe_say "ulimit -n is at most $FD_LIMIT here: the idle test opens $IDLE_CONNS connections, not $IDLE_WANTED"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/foliod-bench.XXXXXX") || fe_die "mktemp failed"
chmod 711 "$T" # the postgres user must reach $T/pg when this runs as root
PG_DIR=$T/pg
TLS_DIR=$T/tls
CONF=$T/foliod.conf
LOG=$T/foliod.log
OUT=$T/runs.log
FOLIOD_PID=
FOLIOD_PORT=
PG_STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$FOLIOD_PID" ] && kill -0 "$FOLIOD_PID" 2>/dev/null; then
        fe_stop_child "$FOLIOD_PID" TERM 15 || fe_say "foliod did not stop within 15 s; killed it"
    fi
    if [ "$PG_STARTED" = 1 ]; then
        fe_pg stop "$PG_DIR" 2>/dev/null || fe_say "could not stop PostgreSQL in $PG_DIR"
    fi
    if [ "$rc" != 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
        if [ "$rc" != 0 ] && [ -s "$LOG" ]; then
            fe_say "last 20 lines of $LOG:"
            tail -n 20 "$LOG" >&2
        fi
        fe_say "kept $T (runs.log: every run's output)"
    else
        fe_pg destroy "$PG_DIR" 2>/dev/null || true
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A progress line on stderr, kept in runs.log too.
say() { printf '%s\n' "$*" | tee -a "$OUT" >&2; }

# A value from a "result k=v ..." line of loadgen.
rget() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# Median of the arguments (the mean of the middle two for an even count); "-" for none.
median() {
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]
        else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# User + system CPU time of a process in ms (fields 14 and 15 of /proc/PID/stat).
proc_cpu_ms() {
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%d\n", ($12 + $13) * 1000 / hz }' \
        "/proc/$1/stat" 2>/dev/null || echo 0
}

# User + system CPU time in ms of the PostgreSQL server: the postmaster and its children (the
# backends, the background processes), from /proc. cat reads past a process that exits while
# the files are read (awk given the files would stop there and the sum would be lost).
pg_cpu_ms() {
    local pm
    pm=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v hz="$CLK_TCK" -v pm="$pm" '{ pid = $1
        sub(/^.*\) /, ""); if (pid == pm || $2 == pm) t += $12 + $13 }
        END { printf "%d\n", t * 1000 / hz }'
}

ms() { awk -v u="$1" 'BEGIN { if (u == "" || u == "-") print "-"; else printf "%.2f", u / 1000 }'; }
kib() { awk -v b="$1" 'BEGIN { if (b == "" || b == "-") print "-"; else printf "%.1f", b / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
whole() { printf '%s\n' "$@" | awk 'NF { printf "%s%.0f", (n++ ? ", " : ""), $1 }'; }
# VALUE OP LIMIT: yes, no, or - when there is no value.
meets() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "" || v == "-") { print "-"; exit }
        ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0); print ok ? "yes" : "no" }'
}

# --- PostgreSQL, TLS files, configuration, schema and demo hotel, as the harness does ---
export FOLIOD_PG_FAST=1
fe_pg init "$PG_DIR" 2>"$T/pg-init.log" || {
    cat "$T/pg-init.log" >&2
    fe_die "pg.sh init failed"
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
[ -n "$PG_PORT" ] || fe_die "could not start PostgreSQL (see $T/pg-start.log)"
unset FOLIOD_PG_FAST
PG_SOCK=$(printf '%s\n' "$conninfo" | sed -n 's/.*host=\([^ ]*\).*/\1/p')
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U foliod -d foliod)

POS=0
if compgen -G "sql/*_pos.sql" >/dev/null; then POS=1; fi
fe_tls "$TLS_DIR" "${FOLIOD_DEMO_OUTLETS[@]}" 2>"$T/tls.log" || {
    cat "$T/tls.log" >&2
    fe_die "tls.sh failed"
}

SERVER_EXTRA="max_connections = $((IDLE_CONNS + 1000))
idle_timeout = 600"
fe_write_conf "$CONF" 7443 "$TLS_DIR" "$conninfo" "$SERVER_EXTRA"
fe_migrate "$BUILD" "$CONF" >>"$LOG" 2>&1 || fe_die "foliod --migrate failed (see $LOG)"
# Logins are set-up, not measured: the demo passwords get the cheapest scrypt cost here, so that
# 256 connections log in at once instead of queueing for the two hash workers.
"$BUILD/foliod" -c "$CONF" -o auth.scrypt_log_n=10 --import "$FOLIOD_DEMO_HOTEL" >>"$LOG" 2>&1 ||
    fe_die "foliod --import failed (see $LOG)"

FOLIOD_OPTS=(-o "database.pool_size=$POOL" -o log.access=no -o log.level=warn)

start_foliod() {
    local attempt port
    for attempt in 1 2 3; do
        port=${FOLIOD_PORT:-$(fe_pick_port "$PG_PORT")}
        fe_write_conf "$CONF" "$port" "$TLS_DIR" "$conninfo" "$SERVER_EXTRA"
        printf -- '--- bench: starting foliod on 127.0.0.1:%s\n' "$port" >>"$LOG"
        "$BUILD/foliod" -c "$CONF" "${FOLIOD_OPTS[@]}" >>"$LOG" 2>&1 &
        FOLIOD_PID=$!
        if fe_wait_listen 127.0.0.1 "$port" 20 "$FOLIOD_PID"; then
            FOLIOD_PORT=$port
            return 0
        fi
        fe_stop_child "$FOLIOD_PID" TERM 5 || true
        FOLIOD_PID=
        FOLIOD_PORT=
        fe_say "foliod did not start on port $port (attempt $attempt)"
    done
    fe_die "foliod would not start (see $LOG)"
}

stop_foliod() {
    fe_stop_child "$FOLIOD_PID" TERM 15 || fe_say "foliod did not stop within 15 s; killed it"
    FOLIOD_PID=
}

start_foliod
fe_say "PostgreSQL on port $PG_PORT, foliod on 127.0.0.1:$FOLIOD_PORT (pid $FOLIOD_PID), directory $T"

# LIMIT MODE [options]: loadgen against our foliod, killed if it overruns LIMIT seconds.
lg() {
    local limit=$1
    shift
    timeout -k 5 "$limit" "$LOADGEN" "$@" --host 127.0.0.1 --port "$FOLIOD_PORT" \
        --ca "$TLS_DIR/ca.crt"
}

# Every posting of this run carries this tag in its reference or idempotency key.
RUN_TAG=B$(date +%s)
OK_FRONT=0
OK_POS=0
run_no=0

# --- the bench hotel: a room and an in-house stay per connection; outlets BR0001.. (loadgen
# makes their certificates with the development CA) for the POS runs and the reconnect ---
nout=$RECONNECT
[ "$max_conns" -gt "$nout" ] && nout=$max_conns
[ "$OPEN_CONNS" -gt "$nout" ] && nout=$OPEN_CONNS
setup_line=$(lg 320 setup --user manager --password manager --stays "$max_conns" \
    --outlets "$nout" --outlet-prefix BR --seconds 300 2>>"$OUT" | tee -a "$OUT" | grep '^result ')
if [ -z "$setup_line" ] || [ "$(rget "$setup_line" errors)" != 0 ]; then
    fe_die "loadgen setup failed: ${setup_line:-no result (see $OUT)}"
fi
say "set-up: $(rget "$setup_line" 'done') requests ($max_conns rooms with a stay each, $nout outlets) in $((SECONDS - START)) s"
OUTLET_ARGS=(--mint-ca "$TLS_DIR/ca.crt" --mint-ca-key "$TLS_DIR/ca.key" --outlet-prefix BR
    --hello pos.hello)

PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -f bench/ceiling.sql >>"$OUT" 2>&1 ||
    fe_die "bench/ceiling.sql failed"
CASHIER_ID=$("${PSQL[@]}" -c "SELECT id FROM users WHERE username = 'cashier'")
PROPERTY_ID=$("${PSQL[@]}" -c "SELECT property_id FROM users WHERE username = 'cashier'")
STAY0=$("${PSQL[@]}" -c "SELECT min(s.id) FROM stays s JOIN rooms r ON r.id = s.room_id
    WHERE s.status = 'in_house' AND r.number LIKE 'BENCH%'")
SQL_CTX="{\"user\":\"cashier\",\"role\":\"cashier\",\"conn\":0,\"peer\":\"pgbench\",\"user_id\":$CASHIER_ID,\"outlet_id\":null,\"property_id\":$PROPERTY_ID}"

# --- 1. closed loop, interleaved with the ceiling ---
declare -A TPUT P50 P95 P99 MAX ERRS REASONS CEIL
PG_CONNS_SEEN=-

pgbench_run() { # NAME CLIENTS SCRIPT [pgbench options]
    local name=$1 clients=$2 script=$3 out tps
    shift 3
    out=$(timeout -k 5 $((RUN_SECONDS + 60)) pgbench -n -c "$clients" -j 2 -T "$RUN_SECONDS" \
        -f "$script" "$@" -h "$PG_SOCK" -p "$PG_PORT" -U foliod foliod 2>&1)
    printf '%s\n' "$out" >>"$OUT"
    tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1)
    if [ -z "$tps" ] || printf '%s\n' "$out" | grep -qE 'number of failed transactions: [1-9]|aborted'; then
        fe_say "pgbench $script at $clients clients failed (see $OUT)"
        tps=0
    fi
    CEIL[$name/$clients]+="$tps "
    say "  pgbench $name, $clients clients: $tps tps"
}

# One load run, its output into runs.log; sets LINE to loadgen's result line and counts the
# postings it saw acknowledged.
LINE=
load_run() { # KIND CONNS [loadgen options]
    local kind=$1 n=$2 ok
    shift 2
    run_no=$((run_no + 1))
    local args=(load --kind "$kind" --conns "$n" --tag "$RUN_TAG-$run_no" "$@")
    [ "$kind" = pos ] && args+=("${OUTLET_ARGS[@]}" --outlets "$n")
    LINE=$(lg $((RUN_SECONDS + OPEN_SECONDS + 120)) "${args[@]}" 2>>"$OUT" | tee -a "$OUT" |
        grep '^result ')
    if [ -z "$LINE" ]; then
        fe_say "loadgen load --kind $kind --conns $n gave no result (see $OUT)"
        LINE="result errors=no_result reasons=loadgen_failed"
    fi
    ok=$(rget "$LINE" ok_total)
    if [ "$kind" = pos ]; then OK_POS=$((OK_POS + ${ok:-0})); else OK_FRONT=$((OK_FRONT + ${ok:-0})); fi
}

foliod_run() { # KIND CONNS [KEY [loadgen options]]
    local kind=$1 n=$2 key=${3:-$1/$2} counter='' reasons
    shift 2
    [ $# -gt 0 ] && shift
    if [ "$n" = "$max_conns" ] && [ "$PG_CONNS_SEEN" = - ]; then
        # PostgreSQL's client connections in the middle of the largest run (pool + this psql)
        (sleep $((RUN_SECONDS / 2 + 2)) && "${PSQL[@]}" -c "SELECT count(*) FROM pg_stat_activity
            WHERE backend_type = 'client backend'" >"$T/pgconns" 2>/dev/null) &
        counter=$!
    fi
    load_run "$kind" "$n" --seconds "$RUN_SECONDS" --warmup 1 "$@"
    TPUT[$key]+="$(rget "$LINE" throughput) "
    P50[$key]+="$(rget "$LINE" p50_us) "
    P95[$key]+="$(rget "$LINE" p95_us) "
    P99[$key]+="$(rget "$LINE" p99_us) "
    MAX[$key]+="$(rget "$LINE" max_us) "
    ERRS[$key]+="$(rget "$LINE" errors) "
    reasons=$(rget "$LINE" reasons)
    [ "${reasons:--}" != - ] && REASONS[$key]+="$reasons "
    say "  foliod $key, $n connections: $(rget "$LINE" throughput) ok/s, p99 $(ms "$(rget "$LINE" p99_us)") ms, $(rget "$LINE" errors) errors ($reasons)"
    if [ -n "$counter" ]; then
        wait "$counter" 2>/dev/null
        [ -s "$T/pgconns" ] && PG_CONNS_SEEN=$(cat "$T/pgconns")
    fi
}

KINDS=("$KIND")
[ "$POS" = 1 ] && KINDS+=(pos)
part closed || ROUNDS=0
for ((r = 1; r <= ROUNDS; r++)); do
    say "round $r of $ROUNDS ($((SECONDS - START)) s so far)"
    pgbench_run ceiling 16 bench/posting.pgbench -M prepared
    for n in "${CONNS_LIST[@]}"; do [ "$n" -le 16 ] && foliod_run "$KIND" "$n"; done
    pgbench_run sql 16 bench/folio_post.pgbench -M extended -D "ctx=$SQL_CTX" -D "stay0=$STAY0"
    [ "$POS" = 1 ] && foliod_run pos 16
    pgbench_run ceiling 64 bench/posting.pgbench -M prepared
    for n in "${CONNS_LIST[@]}"; do [ "$n" -gt 16 ] && foliod_run "$KIND" "$n"; done
    [ "$POS" = 1 ] && foliod_run pos 64
    # outlets sharing rooms: 64 outlets posting to the stays of rooms BENCH0010-BENCH0019
    [ "$POS" = 1 ] && foliod_run pos 64 pos-shared/64 --room-prefix BENCH001
done

# --- 2. open loop ---
OPEN_KIND=$KIND
[ "$POS" = 1 ] && OPEN_KIND=pos
OPEN_LINE=
if part open; then
    say "open loop: $OPEN_RATE postings/s from $OPEN_CONNS connections for $OPEN_SECONDS s ($OPEN_KIND)"
    load_run "$OPEN_KIND" "$OPEN_CONNS" --rate "$OPEN_RATE" --seconds "$OPEN_SECONDS" --warmup 1
    OPEN_LINE=$LINE
    say "  $(rget "$OPEN_LINE" throughput) ok/s, p99 $(ms "$(rget "$OPEN_LINE" p99_us)") ms, max $(ms "$(rget "$OPEN_LINE" max_us)") ms, $(rget "$OPEN_LINE" errors) errors"
fi

# --- 3. handshakes, reconnect ---
HS_LINE=
HS_CPU=-
RC_LINE=
RC_CPU=-
RR_LINE=
RR_CPU=-
RC_PG_CPU=-
RR_PG_CPU=-
HELLO=server.ping
[ "$POS" = 1 ] && HELLO=pos.hello
if part tls; then
    say "TLS handshakes for $HS_SECONDS s ($HS_CONNECTORS connectors)"
    cpu0=$(proc_cpu_ms "$FOLIOD_PID")
    HS_LINE=$(lg $((HS_SECONDS + 30)) handshakes --concurrency "$HS_CONNECTORS" \
        --seconds "$HS_SECONDS" 2>>"$OUT" | tee -a "$OUT" | grep '^result ')
    HS_CPU=$(($(proc_cpu_ms "$FOLIOD_PID") - cpu0))
    say "  $(rget "$HS_LINE" rate) handshakes/s, $(rget "$HS_LINE" errors) errors"

    sleep 1
    say "reconnect: $RECONNECT outlets at once ($HELLO)"
    cpu0=$(proc_cpu_ms "$FOLIOD_PID")
    pg0=$(pg_cpu_ms)
    RC_LINE=$(lg 90 reconnect --conns "$RECONNECT" --outlets "$RECONNECT" "${OUTLET_ARGS[@]}" \
        --hello "$HELLO" --seconds 30 2>>"$OUT" | tee -a "$OUT" | grep '^result ')
    RC_CPU=$(($(proc_cpu_ms "$FOLIOD_PID") - cpu0))
    RC_PG_CPU=$(($(pg_cpu_ms) - pg0))
    say "  all served in $(rget "$RC_LINE" all_ms) ms: $(rget "$RC_LINE" served) served, $(rget "$RC_LINE" errors) errors"

    # The same outlets again, each resuming the session ticket it got in an unmeasured first
    # round (what a POS does after a network outage; after a restart of foliod the tickets are
    # void and the storm above is what happens). foliod's CPU is read around the measured round.
    sleep 1
    say "reconnect with session resumption: $RECONNECT outlets at once ($HELLO)"
    rm -f "$T/storm.cpu"
    RR_LINE=$(lg 120 reconnect --resume --conns "$RECONNECT" --outlets "$RECONNECT" \
        "${OUTLET_ARGS[@]}" --hello "$HELLO" --seconds 30 2>&1 >"$T/storm.out" |
        tee -a "$OUT" | while IFS= read -r l; do
            case $l in *"first round:"*) echo "$(proc_cpu_ms "$FOLIOD_PID") $(pg_cpu_ms)" >"$T/storm.cpu" ;; esac
        done; cat "$T/storm.out")
    printf '%s\n' "$RR_LINE" >>"$OUT"
    RR_LINE=$(printf '%s\n' "$RR_LINE" | grep '^result ')
    RR_CPU=-
    if [ -s "$T/storm.cpu" ]; then
        read -r cpu0 pg0 <"$T/storm.cpu"
        RR_CPU=$(($(proc_cpu_ms "$FOLIOD_PID") - cpu0))
        RR_PG_CPU=$(($(pg_cpu_ms) - pg0))
    fi
    say "  all served in $(rget "$RR_LINE" all_ms) ms: $(rget "$RR_LINE" served) served ($(rget "$RR_LINE" resumed) resumed), $(rget "$RR_LINE" errors) errors"
fi

# --- 4. memory ---
PEAK_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$FOLIOD_PID/status" 2>/dev/null)
say "foliod peak RSS after the load runs: ${PEAK_KB:-?} KiB"
IDLE_LINE=
IDLE_HWM=
if part memory; then
    stop_foliod
    start_foliod
    # first a little traffic, so that the baseline holds what the first requests allocate once
    load_run folio 4 --seconds 1 --warmup 0
    say "idle: $IDLE_CONNS TLS connections to a fresh foliod (pid $FOLIOD_PID)"
    IDLE_LINE=$(lg 200 idle --conns "$IDLE_CONNS" --concurrency 100 --hold 2 --seconds 150 \
        --pid "$FOLIOD_PID" 2>>"$OUT" | tee -a "$OUT" | grep '^result ')
    IDLE_HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$FOLIOD_PID/status" 2>/dev/null)
    say "  $(rget "$IDLE_LINE" open) open: $(rget "$IDLE_LINE" per_conn_bytes) bytes each, $(rget "$IDLE_LINE" errors) errors"
    sleep 1
    stop_foliod
fi

# --- 5. the night audit of a 1,000-room hotel with 30 days of postings ---
# Property AUD1K (imported like the demo hotel: its codes, A0001..A1000, users a1kcashier and
# a1kauditor), opened AUDIT_DAYS + 1 days ago. Each day: bench/audit_day.sql's front-desk day
# through foliod's API functions (check-outs, check-ins to 86-94% occupancy, restaurant and
# bar charges, payments, a cashier shift), then foliod audits the date (folioctl audit run): the
# history is AUDIT_DAYS real audited days. On the open day after them, the same front-desk day,
# then the measured audit: wall clock of `folioctl audit run` (audit.run, followed until
# audit.status says done), its steps from audit_steps, foliod's peak RSS during it (VmHWM, reset
# just before through /proc/PID/clear_refs), PostgreSQL's memory sampled every 100 ms (the sum
# over its processes of private memory, and the largest process's RSS, which counts the shared
# buffers it touched), and folio.post latency from AUDIT_POST_CONNS connections posting
# AUDIT_POST_RATE per second in all to in-house stays of the hotel while the audit runs.
A_LINE=
A_WALL=-
A_HIST=-
A_STEPS=-
A_HWM=-
A_RSS0=-
A_PG0=-
A_PGPEAK=-
A_PGMAX=-
A_PGANON0=-
A_PGANON=-
A_PGN=0
A_FACTS=-
A_NOTE=
audit_psql() { PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" "$@"; }
audit_run() { # prints the wall clock of one audit in ms; fails when it does not end done
    local t0 t1
    t0=$(date +%s%N)
    FOLIOCTL_PASSWORD=a1kauditor timeout -k 5 120 "$BUILD/folioctl" --host 127.0.0.1 \
        --port "$FOLIOD_PORT" --ca "$TLS_DIR/ca.crt" --user a1kauditor --timeout 60000 \
        audit run --property AUD1K >>"$OUT" 2>&1 || return 1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
# PostgreSQL's processes (the postmaster and its children), from smaps_rollup, in KiB:
# "sum of Pss (shared buffers counted once), sum of Pss_Anon (their own memory: caches, sorts,
# hash tables), the largest Pss_Anon of one process".
pg_mem() {
    local pm pids=() p
    pm=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || return
    for p in $(awk -v pm="$pm" '{ pid = $1; sub(/^.*\) /, ""); if (pid == pm || $2 == pm) print pid }' \
        /proc/[0-9]*/stat 2>/dev/null); do
        pids+=("/proc/$p/smaps_rollup")
    done
    awk '/^Pss:/ { t += $2 } /^Pss_Anon:/ { a += $2; if ($2 > m) m = $2 }
        END { printf "%d %d %d\n", t, a, m }' "${pids[@]}" 2>/dev/null
}
if part audit; then
    AUDIT_DAYS=${BENCH_AUDIT_DAYS:-30}
    A_ROOMS=1000
    [ -n "$FOLIOD_PID" ] || start_foliod
    A_START=$SECONDS
    A_DOC=$T/audit-hotel.json
    jq --arg bd "$(date -u -d "-$((AUDIT_DAYS + 1)) days" +%F)" --argjson n "$A_ROOMS" \
        --arg chunk "${BENCH_AUDIT_CHUNK:-}" '{
        comment: "make bench: the audit hotel (bench/run.sh)",
        properties: [.properties[0] | del(.outlets) | .code = "AUD1K" | .name = "Audit bench hotel"
            | .business_date = $bd
            | if $chunk != "" then .settings.audit_chunk = ($chunk | tonumber) else . end
            | .rooms = [range(1; $n + 1) | {number: ("A" + ("000" + tostring)[-4:]),
                        room_type: "STD", floor: (((. - 1) / 100 | floor) + 1)}]],
        users: [{username: "a1kcashier", password: "a1kcashier", role: "cashier",
                 property: "AUD1K", full_name: "Bench Cashier"},
                {username: "a1kauditor", password: "a1kauditor", role: "auditor",
                 property: "AUD1K", full_name: "Bench Night Auditor"}]}' \
        "$FOLIOD_DEMO_HOTEL" >"$A_DOC" || fe_die "could not write $A_DOC"
    "$BUILD/foliod" -c "$CONF" -o auth.scrypt_log_n=10 --import "$A_DOC" >>"$LOG" 2>&1 ||
        fe_die "foliod --import of the audit hotel failed (see $LOG)"
    audit_psql -f bench/audit_day.sql >>"$OUT" 2>&1 || fe_die "bench/audit_day.sql failed"
    say "audit hotel: $A_ROOMS rooms; $AUDIT_DAYS days of front-desk work, each audited by foliod"
    hist=()
    for ((d = 1; d <= AUDIT_DAYS + 1; d++)); do
        audit_psql -c "CALL bench_audit_day('AUD1K', 'a1kcashier', $d, $AUDIT_CHARGES, $AUDIT_PAYMENTS)" >>"$OUT" 2>&1 ||
            fe_die "day $d of the audit hotel failed (see $OUT)"
        [ "$d" -gt "$AUDIT_DAYS" ] && break
        ms_=$(audit_run) || fe_die "the audit of day $d failed (see $OUT)"
        hist+=("$ms_")
        if [ $((d % 10)) = 0 ]; then say "  $d days in $((SECONDS - A_START)) s (last audit $ms_ ms)"; fi
    done
    A_HIST=$(printf '%s\n' "${hist[@]}" | sort -n | awk '{ v[NR] = $1 } END {
        if (NR) printf "%d-%d ms, median %d ms", v[1], v[NR], v[int((NR + 1) / 2)] }')
    A_FACTS=$(audit_psql -F ' ' -c "SELECT
        (SELECT count(*) FROM postings p JOIN folios f ON f.id = p.folio_id
           JOIN properties pr ON pr.id = f.property_id WHERE pr.code = 'AUD1K'),
        (SELECT count(*) FROM postings p JOIN folios f ON f.id = p.folio_id
           JOIN properties pr ON pr.id = f.property_id
          WHERE pr.code = 'AUD1K' AND p.business_date = pr.business_date),
        (SELECT count(*) FROM stays s JOIN properties pr ON pr.id = s.property_id
          WHERE pr.code = 'AUD1K' AND s.status = 'in_house'),
        (SELECT count(*) FROM stays s JOIN properties pr ON pr.id = s.property_id
          WHERE pr.code = 'AUD1K'),
        (SELECT count(*) FROM postings)" 2>>"$OUT")
    read -r a_post a_today a_inhouse a_stays a_all <<<"$A_FACTS"
    say "  history built in $((SECONDS - A_START)) s: $a_post postings, $a_stays stays; open day: $a_today postings, $a_inhouse in house"
    # the measured audit, with postings arriving during it
    est=$(printf '%s\n' "${hist[@]}" | sort -n | tail -n 1)
    post_secs=$(awk -v e="${est:-3000}" 'BEGIN { printf "%.1f", e / 1000 + 0.5 }')
    run_no=$((run_no + 1))
    lg $((RUN_SECONDS + 120)) load --kind stay --user a1kcashier --password a1kcashier \
        --room-prefix A --conns "$AUDIT_POST_CONNS" --rate "$AUDIT_POST_RATE" \
        --seconds "$post_secs" --warmup 1 --tag "$RUN_TAG-$run_no" \
        >"$T/audit-load.out" 2>"$T/audit-load.err" &
    a_lg=$!
    read -r A_PG0 A_PGANON0 _ <<<"$(pg_mem)"
    A_RSS0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$FOLIOD_PID/status")
    echo 5 >"/proc/$FOLIOD_PID/clear_refs" 2>/dev/null || A_NOTE="VmHWM could not be reset: since foliod started"
    (while :; do pg_mem; sleep 0.05; done) >"$T/pg-mem.log" 2>/dev/null &
    a_sampler=$!
    # the load generator logs in, finds the stays and warms up for a second: the audit starts
    # when it starts measuring
    for _ in $(seq 1 400); do grep -q '^loadgen: measuring' "$T/audit-load.err" 2>/dev/null && break; sleep 0.05; done
    A_WALL=$(audit_run) || { A_WALL=-; fe_say "the measured audit failed (see $OUT)"; }
    A_HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$FOLIOD_PID/status")
    kill "$a_sampler" 2>/dev/null
    wait "$a_sampler" 2>/dev/null
    wait "$a_lg"
    A_LINE=$(grep '^result ' "$T/audit-load.out")
    cat "$T/audit-load.err" "$T/audit-load.out" >>"$OUT"
    OK_FRONT=$((OK_FRONT + $(rget "$A_LINE" ok_total)))
    read -r A_PGPEAK A_PGANON A_PGMAX A_PGN <<<"$(awk '{ if ($1 > t) t = $1; if ($2 > a) a = $2
        if ($3 > m) m = $3 } END { print t + 0, a + 0, m + 0, NR }' "$T/pg-mem.log")"
    A_STEPS=$(audit_psql -c "SELECT string_agg(format('%s %s ms', st.step,
            round(extract(epoch FROM st.done_at - st.started_at) * 1000)), ', ' ORDER BY st.seq)
        FROM audit_steps st WHERE st.run_id = (SELECT r.id FROM audit_runs r
            JOIN properties pr ON pr.id = r.property_id WHERE pr.code = 'AUD1K'
            ORDER BY r.id DESC LIMIT 1)" 2>>"$OUT")
    say "  audit of the open day: $A_WALL ms ($A_STEPS); foliod VmHWM $A_HWM KiB; postings during it: p99 $(ms "$(rget "$A_LINE" p99_us)") ms, max $(ms "$(rget "$A_LINE" max_us)") ms, $(rget "$A_LINE" errors) errors"
fi

# --- 6. every acknowledged posting is in the database (more only if a timeout lost an answer) ---
DB_FRONT=$("${PSQL[@]}" -c "SELECT count(*) FROM postings
    WHERE source = 'front_desk' AND reference LIKE '$RUN_TAG-%'" 2>>"$OUT") || DB_FRONT='?'
DB_POS=-
if [ "$POS" = 1 ]; then
    DB_POS=$("${PSQL[@]}" -c "SELECT count(*) FROM pos_requests
        WHERE status = 'OK' AND key LIKE '$RUN_TAG-%'" 2>>"$OUT") || DB_POS='?'
fi
say "acknowledged postings: front desk $OK_FRONT (in the database: $DB_FRONT), POS $OK_POS (in the database: $DB_POS)"

# --- the table ---
HOST=$(hostname -s 2>/dev/null || hostname)
DATE=$(date -u +%Y-%m-%d)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null)" ] && COMMIT="$COMMIT plus uncommitted changes"
CPU=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
PGVER=$("${PSQL[@]}" -c 'SHOW server_version' 2>/dev/null | awk '{ print $1 }')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
# shellcheck disable=SC2086 # the runs, one word each
CEIL16=$(median ${CEIL[ceiling/16]:-})
TARGET_NOTE="(issue 7)"

table() {
    local kind n key t label c
    printf '### %s, %s\n\n' "$DATE" "$HOST"
    printf -- '- Machine: %s cores (%s), %s of memory, Linux %s.\n' "$(nproc)" "$CPU" "$MEM" "$(uname -r)"
    printf -- '- Software: commit %s; PostgreSQL %s; libevent %s; OpenSSL %s.\n' "$COMMIT" \
        "${PGVER:-?}" "$(pkg-config --modversion libevent 2>/dev/null)" \
        "$(pkg-config --modversion openssl 2>/dev/null)"
    printf -- '- Conditions: foliod, PostgreSQL, pgbench and the load generator share the machine '
    printf '(other work on it moves figures by 10-25%%). Private cluster with fsync and '
    printf 'synchronous_commit off, as in the tests. foliod: release build, pool of %s, ' "$POOL"
    printf 'group commit with the default settings (2 batches at once of up to 32 postings), ' 
    printf 'warn-level log, no access log. %s s per run after 1 s of warm-up; rounds: %s, ' "$RUN_SECONDS" "$ROUNDS"
    printf 'interleaved (ceiling, foliod, ceiling, foliod...); medians, with every run listed. '
    printf 'Load average (1, 5, 15 min) at the start: %s; at the end: %s.\n' "${LOAD_START:-?}" "${LOAD_END:-?}"
    printf -- '- foliod runs: `folio.post` of TIP 100 (no tax rule: one posting) to %s, as the ' \
        "$([ "$KIND" = stay ] && echo "the connection's own in-house stay" || echo "the connection's own non_guest folio")"
    printf 'cashier; `pos.post` of a TIP 100 check with an idempotency key, each connection an '
    printf 'outlet with its own client certificate (an outlet'"'"'s postings are serialised by design).\n'
    printf -- '- Ceiling: `pgbench -M prepared -j 2` running bench/posting.pgbench (BEGIN; INSERT a '
    printf 'posting with a unique key; UPDATE the balance row; COMMIT). "SQL of folio.post": '
    printf '`pgbench -M extended` calling `api_folio_post(ctx, params)` as foliod does '
    printf '(bench/folio_post.pgbench): the database work of one folio.post without the daemon.\n\n'

    printf '| closed loop, one request in flight per connection | conns | per s (median) | runs | p50 ms | p95 ms | p99 ms | max ms | / ceiling at 16 | errors |\n'
    printf '|---|---:|---:|---|---:|---:|---:|---:|---:|---|\n'
    for key in ceiling/16 ceiling/64 sql/16; do
        [ -n "${CEIL[$key]:-}" ] || continue
        c=${key#*/}
        label="ceiling: pgbench, posting script"
        [ "${key%/*}" = sql ] && label="pgbench, SQL of folio.post"
        # shellcheck disable=SC2086
        t=$(median ${CEIL[$key]})
        # shellcheck disable=SC2086
        printf '| %s | %s | %s | %s | | | | | %s | |\n' "$label" "$c" "$t" \
            "$(whole ${CEIL[$key]})" "$(ratio "$t" "$CEIL16")"
    done
    for kind in "${KINDS[@]}"; do
        for n in "${CONNS_LIST[@]}" 16 64; do
            key=$kind/$n
            [ -n "${TPUT[$key]:-}" ] || continue
            [ "${done_keys[$key]:-}" = 1 ] && continue
            done_keys[$key]=1
            label="foliod, folio.post"
            [ "$kind" = pos ] && label="foliod, pos.post"
            # shellcheck disable=SC2086
            t=$(median ${TPUT[$key]})
            # shellcheck disable=SC2086
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$n" "$t" \
                "$(whole ${TPUT[$key]})" "$(ms "$(median ${P50[$key]})")" \
                "$(ms "$(median ${P95[$key]})")" "$(ms "$(median ${P99[$key]})")" \
                "$(ms "$(median ${MAX[$key]})")" "$(ratio "$t" "$CEIL16")" \
                "$(errors_cell "$key")"
        done
    done
    key=pos-shared/64
    if [ -n "${TPUT[$key]:-}" ]; then
        # shellcheck disable=SC2086
        t=$(median ${TPUT[$key]})
        # shellcheck disable=SC2086
        printf '| foliod, pos.post, outlets sharing 10 rooms | 64 | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$t" "$(whole ${TPUT[$key]})" "$(ms "$(median ${P50[$key]})")" \
            "$(ms "$(median ${P95[$key]})")" "$(ms "$(median ${P99[$key]})")" \
            "$(ms "$(median ${MAX[$key]})")" "$(ratio "$t" "$CEIL16")" "$(errors_cell "$key")"
    fi
    printf '\n| measure | result | target %s | met |\n|---|---|---|---|\n' "$TARGET_NOTE"
    local p99 mx rr per open all
    if part open; then
        p99=$(ms "$(rget "$OPEN_LINE" p99_us)")
        mx=$(ms "$(rget "$OPEN_LINE" max_us)")
        printf '| open loop: %s/s from %s connections for %s s (%s) | %s per s; p50 %s ms, p99 %s ms, max %s ms; %s errors | p99 <= 5 ms, max <= 250 ms | %s |\n' \
            "$OPEN_RATE" "$OPEN_CONNS" "$OPEN_SECONDS" "$([ "$OPEN_KIND" = pos ] && echo 'pos.post, 20 outlets' || echo folio.post)" \
            "$(rget "$OPEN_LINE" throughput)" "$(ms "$(rget "$OPEN_LINE" p50_us)")" "$p99" "$mx" \
            "$(rget "$OPEN_LINE" errors)" \
            "$([ "$(meets "$p99" '<=' 5)" = yes ] && [ "$(meets "$mx" '<=' 250)" = yes ] && echo yes || echo no)"
    else
        printf '| open loop | not run (BENCH_PARTS) | | |\n'
    fi
    for n in 16 64; do
        key=$KIND/$n
        [ -n "${TPUT[$key]:-}" ] || continue
        # shellcheck disable=SC2086
        rr=$(ratio "$(median ${TPUT[$key]})" "$CEIL16")
        printf '| folio.post, %s connections, / ceiling at 16 clients | %s | >= 0.5 (aim 1.0) | %s |\n' \
            "$n" "$rr" "$(meets "$rr" '>=' 0.5)"
    done
    if part closed; then
        printf '| PostgreSQL client connections during the %s-connection run | %s (the pool of %s and the psql that counted) | a fixed pool of about 16 | %s |\n' \
            "$max_conns" "$PG_CONNS_SEEN" "$POOL" "$(meets "$PG_CONNS_SEEN" '<=' $((POOL + 1)))"
    else
        printf '| closed loop | not run (BENCH_PARTS) | | |\n'
    fi
    if part tls; then
        printf '| TLS handshakes, full TLS 1.3, %s connectors, %s s | %s per s; p50 %s ms; %s errors; CPU: foliod %s ms, load generator %s ms | | |\n' \
            "$HS_CONNECTORS" "$HS_SECONDS" "$(rget "$HS_LINE" rate)" "$(ms "$(rget "$HS_LINE" p50_us)")" \
            "$(rget "$HS_LINE" errors)" "$HS_CPU" "$(rget "$HS_LINE" cpu_ms)"
        all=$(rget "$RC_LINE" all_ms)
        printf '| %s outlets reconnecting at once, full handshakes with their own certificates, `%s` each | all served in %s ms (%s served, %s errors); CPU: foliod %s ms, PostgreSQL %s ms, load generator %s ms | <= 2000 ms | %s |\n' \
            "$RECONNECT" "$HELLO" "${all:--}" "$(rget "$RC_LINE" served)" "$(rget "$RC_LINE" errors)" \
            "$RC_CPU" "$RC_PG_CPU" "$(rget "$RC_LINE" cpu_ms)" \
            "$(meets "$all" '<=' 2000)"
        all=$(rget "$RR_LINE" all_ms)
        printf '| the same %s outlets reconnecting at once, each resuming its TLS session (ticket from an earlier connection), `%s` each | all served in %s ms (%s served, %s of them resumed, %s errors); CPU: foliod %s ms, PostgreSQL %s ms, load generator %s ms | <= 2000 ms | %s |\n' \
            "$RECONNECT" "$HELLO" "${all:--}" "$(rget "$RR_LINE" served)" "$(rget "$RR_LINE" resumed)" \
            "$(rget "$RR_LINE" errors)" "$RR_CPU" "$RR_PG_CPU" "$(rget "$RR_LINE" cpu_ms)" \
            "$(meets "$all" '<=' 2000)"
    else
        printf '| TLS handshakes and reconnecting outlets | not run (BENCH_PARTS) | | |\n'
    fi
    if part memory; then
        open=$(rget "$IDLE_LINE" open)
        per=$(kib "$(rget "$IDLE_LINE" per_conn_bytes)")
        printf '| foliod memory per idle TLS connection, %s open | %s KiB (RSS %s -> %s KiB) | <= 45 KiB at 10,000 | %s |\n' \
            "${open:--}" "$per" "$(rget "$IDLE_LINE" rss_before_kb)" "$(rget "$IDLE_LINE" rss_after_kb)" \
            "$(if [ "${open:-0}" -ge 10000 ]; then meets "$per" '<=' 45; else echo "not at 10,000"; fi)"
    else
        printf '| memory of idle TLS connections | not run (BENCH_PARTS) | | |\n'
    fi
    printf '| foliod peak RSS (VmHWM) | %s KiB after the load runs; %s KiB holding the idle connections | | |\n' \
        "${PEAK_KB:--}" "${IDLE_HWM:--}"
    printf '| acknowledged postings found in the database | front desk %s of %s; POS %s of %s | every one | %s |\n' \
        "$DB_FRONT" "$OK_FRONT" "$DB_POS" "$OK_POS" \
        "$([ "$DB_FRONT" = "$OK_FRONT" ] && { [ "$POS" = 0 ] || [ "$DB_POS" = "$OK_POS" ]; } && echo yes || echo no)"
    if part audit; then
        local a_days=${AUDIT_DAYS:-30}
        printf '| night audit of a 1,000-room hotel with %s days of postings: `audit.run` until done (folioctl audit run, wall clock) | %s ms (steps: %s); %s postings in the hotel, %s on the open day, %s stays in house; the %s audits of the history: %s | | |\n' \
            "$a_days" "$A_WALL" "${A_STEPS:--}" "${a_post:--}" "${a_today:--}" "${a_inhouse:--}" \
            "$a_days" "$A_HIST"
        printf '| memory during that audit | foliod: VmHWM %s KiB (RSS %s KiB before; %s). PostgreSQL, all its processes, %s samples during the audit: Pss (shared buffers counted once) %s KiB before, peak %s KiB; their own memory (Pss_Anon) %s KiB before, peak %s KiB, of which the largest process %s KiB | | |\n' \
            "$A_HWM" "$A_RSS0" "${A_NOTE:-peak reset just before the audit}" "$A_PGN" "$A_PG0" \
            "${A_PGPEAK:--}" "$A_PGANON0" "$A_PGANON" "${A_PGMAX:--}"
        p99=$(ms "$(rget "$A_LINE" p99_us)")
        mx=$(ms "$(rget "$A_LINE" max_us)")
        printf '| folio.post during that audit: %s/s from %s connections to in-house stays of the hotel, for %s s from the start of the audit | %s per s; p50 %s ms, p99 %s ms, max %s ms; %s errors%s | max <= 250 ms (issue 6) | %s |\n' \
            "$AUDIT_POST_RATE" "$AUDIT_POST_CONNS" "$(rget "$A_LINE" seconds)" \
            "$(rget "$A_LINE" throughput)" "$(ms "$(rget "$A_LINE" p50_us)")" "$p99" "$mx" \
            "$(rget "$A_LINE" errors)" \
            "$(r=$(rget "$A_LINE" reasons); [ "${r:--}" != - ] && printf ' (%s)' "$r")" \
            "$(meets "$mx" '<=' 250)"
    else
        printf '| night audit of a 1,000-room hotel with 30 days of postings | not run (BENCH_PARTS) | | |\n'
    fi
    if [ "$POS" = 0 ]; then
        printf '| pos.post | not measured: no sql/*_pos.sql in this tree (the open loop used folio.post, the reconnect server.ping) | | |\n'
    fi
    if [ "$IDLE_CONNS" != "$IDLE_WANTED" ]; then
        printf '| idle connections | %s wanted, %s opened: ulimit -n is %s here | | |\n' \
            "$IDLE_WANTED" "$IDLE_CONNS" "$FD_LIMIT"
    fi
    printf '\nErrors are every error answer and transport failure, by reason; none is counted as a success. '
    printf '`make bench` took %s s.\n' "$((SECONDS - START))"
}

errors_cell() { # KEY: the sum of the runs' errors, with the reasons when there were any
    local key=$1 e s=0
    for e in ${ERRS[$key]:-}; do
        if [[ $e =~ ^[0-9]+$ ]]; then s=$((s + e)); else s="$s+?"; fi
    done
    if [ -n "${REASONS[$key]:-}" ]; then printf '%s (%s)' "$s" "${REASONS[$key]% }"; else printf '%s' "$s"; fi
}

declare -A done_keys
TABLE=$T/table.md
table >"$TABLE"
printf '\n'
cat "$TABLE"
if [ -n "$RESULTS_DIR" ]; then
    mkdir -p "$RESULTS_DIR"
    cp "$TABLE" "$RESULTS_DIR/$DATE-$HOST.md"
    cp "$TABLE" "$RESULTS_DIR/latest.md"
    fe_say "written to $RESULTS_DIR/$DATE-$HOST.md and $RESULTS_DIR/latest.md"
fi
