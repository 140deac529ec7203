# shellcheck shell=bash disable=SC2034
# Steps shared by scripts/run.sh (make run) and tests/integration/harness.sh (make check).
# Source it; it defines variables and functions only. Functions report on stderr.
# (SC2034: the variables set here are used by the scripts that source this file.)

FOLIOD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
FOLIOD_DEMO_HOTEL=$FOLIOD_ROOT/etc/demo-hotel.json
FOLIOD_SQL_DIR=$FOLIOD_ROOT/sql
FOLIOD_DEMO_OUTLETS=(REST BAR LAUNDRY MINIBAR SPA)
FOLIOD_DEMO_USERS=(cashier auditor manager admin) # each with its name as password
FE_PROG=${FE_PROG:-foliod}

fe_say() { printf '%s: %s\n' "$FE_PROG" "$*" >&2; }
fe_die() {
    printf '%s: error: %s\n' "$FE_PROG" "$*" >&2
    exit 1
}

# Absolute path of an existing file or directory.
fe_abs() {
    if [ -d "$1" ]; then
        (cd "$1" && pwd -P)
    else
        printf '%s/%s\n' "$(cd "$(dirname "$1")" && pwd -P)" "$(basename "$1")"
    fi
}

# The daemon must have been built: BUILD.
fe_need_foliod() {
    [ -x "$1/foliod" ] || fe_die "$1/foliod does not exist or is not executable; build it first (make, or make SAN=1)"
}

fe_need_demo_hotel() {
    [ -f "$FOLIOD_DEMO_HOTEL" ] || fe_die "missing $FOLIOD_DEMO_HOTEL (the demo hotel set-up)"
}

fe_pg() { bash "$FOLIOD_ROOT/scripts/pg.sh" "$@"; }

# Is the private cluster in DIR running?
fe_pg_running() { fe_pg status "$1" >/dev/null 2>&1; }

# DIR PORT: create the cluster if needed and start it unless it runs. Sets FE_PG_CONNINFO and
# FE_PG_STARTED (1 if this call started it, so the caller owns the stop). Returns 1 on failure.
fe_pg_up() {
    FE_PG_STARTED=0
    FE_PG_CONNINFO=
    fe_pg init "$1" || return 1
    if ! fe_pg_running "$1"; then
        FE_PG_STARTED=1
    fi
    FE_PG_CONNINFO=$(fe_pg start "$1" "$2") || return 1
}

fe_pg_down() { fe_pg stop "$1"; }

# DIR OUTLET...: the TLS files (see scripts/tls.sh).
fe_tls() { bash "$FOLIOD_ROOT/scripts/tls.sh" "$@"; }

# Is TCP port PORT on 127.0.0.1 free to bind? Looks at every local TCP socket (any state,
# like bind(2) without SO_REUSEADDR would) and falls back to a bind or connect test.
fe_port_free() {
    local port=$1 hex f
    hex=$(printf ':%04X ' "$port")
    if [ -r /proc/net/tcp ]; then
        for f in /proc/net/tcp /proc/net/tcp6; do
            [ -r "$f" ] || continue
            # field 2 is local_address as HEXADDR:HEXPORT
            if awk -v p="$hex" 'NR > 1 && index($2 " ", p) { found = 1 } END { exit !found }' "$f"; then
                return 1
            fi
        done
        return 0
    fi
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$port"
        return
    fi
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# A free port in 10000-31999 (below Linux's ephemeral range), not one of the arguments.
fe_pick_port() {
    local i p x taken
    for i in $(seq 1 200); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
        taken=0
        for x in "$@"; do [ "$x" = "$p" ] && taken=1; done
        [ "$taken" = 0 ] && fe_port_free "$p" && {
            printf '%s\n' "$p"
            return 0
        }
        : "$i"
    done
    fe_die "no free TCP port found"
}

# Is something listening on HOST:PORT? Reads /proc/net/tcp* so the daemon never sees a probe
# connection; without /proc, connects.
fe_listening() {
    local host=$1 port=$2 f a hexport
    hexport=$(printf '%04X' "$port")
    if [ -r /proc/net/tcp ] && [[ $host =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        # /proc shows IPv4 addresses as the host-order hex of the network-order integer
        # shellcheck disable=SC2046
        a=$(printf '%02X' $(echo "$host" | tr '.' ' ' | awk '{ print $4, $3, $2, $1 }'))
        for f in /proc/net/tcp /proc/net/tcp6; do
            [ -r "$f" ] || continue
            # state 0A is LISTEN; accept the exact address or a wildcard one
            if awk -v a="$a" -v p="$hexport" 'NR > 1 && $4 == "0A" {
                    split($2, l, ":")
                    if (l[2] == p && (l[1] == a || l[1] ~ /^0+$/ || l[1] ~ /^0+FFFF0000/ && substr(l[1], 25) == a)) found = 1
                } END { exit !found }' "$f"; then
                return 0
            fi
        done
        return 1
    fi
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# HOST PORT SECONDS [PID]: wait until HOST:PORT listens. Returns 1 on timeout, 2 if PID exited.
fe_wait_listen() {
    local host=$1 port=$2 secs=$3 pid=${4:-} i
    for ((i = 0; i < secs * 10; i++)); do
        fe_listening "$host" "$port" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 0.1
    done
    return 1
}

# PID SIGNAL SECONDS: send SIGNAL to the child PID and wait for it. Sets FE_EXIT to its exit
# status. Returns 0 if it exited in time, 1 if it had to be killed (then FE_EXIT is from SIGKILL).
fe_stop_child() {
    local pid=$1 sig=$2 secs=$3 i
    FE_EXIT=0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || FE_EXIT=$?
        return 1
    fi
    wait "$pid" 2>/dev/null || FE_EXIT=$?
    return 0
}

# FILE SECTION KEY [DEFAULT]: a value from an INI file.
fe_conf_get() {
    local v
    v=$(awk -v s="$2" -v k="$3" '
        /^[ \t]*[#;]/ { next }
        /^[ \t]*\[/ { gsub(/[ \t\[\]]/, ""); sec = $0; next }
        sec == s {
            line = $0
            eq = index(line, "=")
            if (!eq) next
            key = substr(line, 1, eq - 1); gsub(/^[ \t]+|[ \t]+$/, "", key)
            if (key != k) next
            val = substr(line, eq + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
            out = val
        }
        END { if (out != "") print out }' "$1" 2>/dev/null)
    printf '%s\n' "${v:-${4:-}}"
}

# FILE LISTEN_PORT TLSDIR CONNINFO [SERVER_EXTRA [MORE_SECTIONS]]: write a foliod.conf.
# SERVER_EXTRA are lines added to [server]; MORE_SECTIONS is appended as is.
fe_write_conf() {
    local file=$1 port=$2 tls=$3 conninfo=$4 server_extra=${5:-} more=${6:-}
    {
        printf '# Generated by scripts/env.sh for development; etc/foliod.conf documents every key.\n'
        printf '[server]\n'
        printf 'listen_host = 127.0.0.1\n'
        printf 'listen_port = %s\n' "$port"
        [ -n "$server_extra" ] && printf '%s\n' "$server_extra"
        printf '\n[tls]\n'
        printf 'cert_file = %s/server.crt\n' "$tls"
        printf 'key_file = %s/server.key\n' "$tls"
        printf 'ca_file = %s/ca.crt\n' "$tls"
        printf 'verify_client = optional\n'
        printf '\n[database]\n'
        printf 'conninfo = %s\n' "$conninfo"
        printf 'migrations_dir = %s\n' "$FOLIOD_SQL_DIR"
        [ -n "$more" ] && printf '\n%s\n' "$more"
    } >"$file.tmp"
    mv "$file.tmp" "$file"
}

# BUILD CONF: apply the sql/ migrations.
fe_migrate() {
    "$1/foliod" -c "$2" --migrate || {
        fe_say "foliod --migrate failed"
        return 1
    }
}

# BUILD CONF [JSON]: load a hotel's set-up (default: the demo hotel).
fe_import() {
    "$1/foliod" -c "$2" --import "${3:-$FOLIOD_DEMO_HOTEL}" || {
        fe_say "foliod --import ${3:-$FOLIOD_DEMO_HOTEL} failed"
        return 1
    }
}

# A digest of what the demo import depends on: the demo hotel file and the migrations.
fe_demo_digest() {
    {
        sha256sum "$FOLIOD_DEMO_HOTEL"
        find "$FOLIOD_SQL_DIR" -maxdepth 1 -type f -name '*.sql' -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum
    } | sha256sum | cut -d' ' -f1
}
