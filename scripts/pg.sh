#!/usr/bin/env bash
# A private PostgreSQL cluster for foliod development and tests.
#
#   bash scripts/pg.sh init DIR          create the cluster in DIR (no-op if it exists)
#   bash scripts/pg.sh start DIR PORT    start it (no-op if running); ensures database foliod
#   bash scripts/pg.sh stop DIR          stop it (fast shutdown); no-op if not running
#   bash scripts/pg.sh status DIR        exit 0 if running, 3 if stopped, 4 if no cluster
#   bash scripts/pg.sh conninfo DIR [PORT]
#   bash scripts/pg.sh destroy DIR       stop it and remove DIR (and its relocated target)
#
# Layout: DIR/data (PGDATA), DIR/run (Unix socket directory), DIR/postgres.log.
# The server listens on the socket DIR/run and on 127.0.0.1, both at PORT. Superuser `foliod`,
# trust on the local socket only (TCP needs a password, and none is set).
# `start`, `status` and `conninfo` print the libpq conninfo on stdout, e.g.
#   host=DIR/run port=PORT dbname=foliod user=foliod
# Everything else goes to stderr.
#
# initdb and postgres refuse to run as root: when called as root, they run as the `postgres`
# system user (FOLIOD_PG_USER overrides) through runuser, and DIR belongs to that user. If that
# user cannot reach DIR (a clone under /root, say) or DIR's path is too long for a Unix socket,
# the cluster is created under /var/tmp (or /tmp) and DIR becomes a symlink to it.
#
# Environment: FOLIOD_PG_BINDIR (server binaries), FOLIOD_PG_FAST=1 (init: no fsync, for tests).
set -euo pipefail

PROG=pg.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Settings from the caller's environment must not redirect our clients or server.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGOPTIONS PGSERVICE PGDATA PGPASSWORD

SUPERUSER=foliod
DBNAME=foliod
MARKER=.foliod-pg
# Longest directory whose "run/.s.PGSQL.65535" still fits in sun_path (108 bytes with the NUL).
MAX_DIR_LEN=86

find_bindir() {
    local d cand=()
    [ -n "${FOLIOD_PG_BINDIR:-}" ] && cand+=("$FOLIOD_PG_BINDIR")
    if command -v pg_config >/dev/null 2>&1; then
        cand+=("$(pg_config --bindir 2>/dev/null || true)")
    fi
    cand+=(/usr/lib/postgresql/15/bin)
    for d in /usr/lib/postgresql/*/bin; do cand+=("$d"); done
    for d in "${cand[@]}"; do
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    done
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install postgresql-15 (bash scripts/deps.sh)"
}

# Who runs initdb, pg_ctl and postgres: empty means the caller.
RUNAS=
if [ "$(id -u)" -eq 0 ]; then
    RUNAS=${FOLIOD_PG_USER:-postgres}
    id -u "$RUNAS" >/dev/null 2>&1 ||
        die "running as root, but there is no '$RUNAS' user to run PostgreSQL as (install postgresql-15 or set FOLIOD_PG_USER)"
    command -v runuser >/dev/null 2>&1 || die "runuser not found (util-linux)"
fi

# Run a command as the cluster's owner, from / (the caller's directory may be unreadable to it).
as_owner() {
    if [ -n "$RUNAS" ]; then
        (cd / && runuser -u "$RUNAS" -- "$@")
    else
        "$@"
    fi
}

# Absolute path of $1 without resolving the last component (which may be our symlink).
abspath() {
    local p=$1 parent base
    case $p in /*) ;; *) p=$PWD/$p ;; esac
    while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    parent=$(dirname "$p")
    base=$(basename "$p")
    if [ -d "$parent" ]; then
        parent=$(cd "$parent" && pwd -P)
    fi
    if [ "$parent" = / ]; then printf '/%s\n' "$base"; else printf '%s/%s\n' "$parent" "$base"; fi
}

check_dir_arg() {
    [ -n "${1:-}" ] || usage
    DIR=$(abspath "$1")
    case $DIR in
    / | /root | /home | /tmp | /var | /var/tmp | /usr | /etc) die "refusing to use $DIR as a cluster directory" ;;
    esac
    case $DIR in *"'"* | *$'\n'*) die "the cluster directory must not contain quotes or newlines: $DIR" ;; esac
    REAL=$DIR
    if [ -e "$DIR" ]; then
        REAL=$(readlink -f "$DIR")
    fi
    DATA=$REAL/data
    SOCKDIR=$REAL/run
}

check_port_arg() {
    case ${1:-} in
    '' | *[!0-9]*) die "bad port '${1:-}'" ;;
    esac
    if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then die "bad port '$1'"; fi
}

initialised() { [ -f "$DATA/PG_VERSION" ]; }

running() {
    initialised || return 1
    as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# Port of the running server (postmaster.pid line 4), else the configured one.
current_port() {
    local p=
    if [ -f "$DATA/postmaster.pid" ]; then
        p=$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)
    fi
    if [ -z "$p" ] && [ -f "$DATA/foliod-port.conf" ]; then
        p=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "$DATA/foliod-port.conf")
    fi
    printf '%s\n' "$p"
}

conninfo() {
    local host=$DIR/run
    # The caller reaches the socket through DIR; a path too long for sun_path uses the real one.
    [ "${#DIR}" -le "$MAX_DIR_LEN" ] || host=$SOCKDIR
    printf 'host=%s port=%s dbname=%s user=%s\n' "$host" "$1" "$DBNAME" "$SUPERUSER"
}

# Can the cluster owner create things in $1, and is the path short enough for the socket?
usable_dir() {
    [ "${#1}" -le "$MAX_DIR_LEN" ] || return 1
    [ -z "$RUNAS" ] && return 0
    (cd / && runuser -u "$RUNAS" -- test -d "$1" -a -w "$1" -a -x "$1") 2>/dev/null
}

# Put the cluster in a fresh directory under /var/tmp or /tmp and make DIR a symlink to it.
relocate() {
    local base target
    for base in /var/tmp /tmp; do
        [ -d "$base" ] || continue
        target=$(mktemp -d "$base/foliod-pg.XXXXXXXX")
        [ -n "$RUNAS" ] && chown "$RUNAS:" "$target"
        chmod 700 "$target"
        if usable_dir "$target"; then
            ln -s "$target" "$DIR"
            log "$DIR: not usable by ${RUNAS:-$(id -un)} (unreachable or path too long); the cluster lives in $target (symlinked)"
            printf '%s\n' "$DIR" >"$target/$MARKER"
            REAL=$target
            DATA=$REAL/data
            SOCKDIR=$REAL/run
            return 0
        fi
        rmdir "$target"
    done
    die "no directory usable by ${RUNAS:-$(id -un)} for the cluster (tried $DIR, /var/tmp, /tmp)"
}

cmd_init() {
    check_dir_arg "$@"
    if [ -L "$DIR" ] && [ ! -d "$DIR" ]; then
        log "$DIR points to a directory that is gone; creating a new cluster"
        rm -f "$DIR"
        REAL=$DIR DATA=$DIR/data SOCKDIR=$DIR/run
    fi
    if initialised; then
        log "cluster exists in $DIR"
        return 0
    fi
    if [ ! -e "$DIR" ]; then
        mkdir -p "$DIR"
        [ -n "$RUNAS" ] && chown "$RUNAS:" "$DIR"
        chmod 700 "$DIR"
        REAL=$(readlink -f "$DIR") DATA=$REAL/data SOCKDIR=$REAL/run
        if ! usable_dir "$REAL"; then
            rmdir "$DIR"
            relocate
        fi
    else
        [ -d "$DIR" ] || die "$DIR exists and is not a directory"
        # Left over from an interrupted init: ours to redo.
        if [ -d "$DATA" ]; then
            log "removing incomplete cluster $DATA"
            rm -rf "$DATA"
        fi
        [ -n "$RUNAS" ] && chown -R "$RUNAS:" "$REAL"
        chmod 700 "$REAL"
        if ! usable_dir "$REAL"; then
            if [ -L "$DIR" ] || [ -n "$(ls -A "$DIR")" ]; then
                die "$REAL is not usable by ${RUNAS:-$(id -un)}; remove $DIR and try again"
            fi
            rmdir "$DIR"
            relocate
        fi
    fi
    [ -f "$REAL/$MARKER" ] || printf '%s\n' "$DIR" >"$REAL/$MARKER"
    as_owner mkdir -p -m 700 "$SOCKDIR"

    local opts=(-D "$DATA" -U "$SUPERUSER" -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256)
    [ "${FOLIOD_PG_FAST:-0}" = 1 ] && opts+=(--no-sync)
    local out
    if ! out=$(as_owner "$BINDIR/initdb" "${opts[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        as_owner rm -rf "$DATA" || true
        die "initdb failed in $DATA"
    fi
    {
        printf '\n# --- private cluster for foliod (scripts/pg.sh) ---\n'
        printf "listen_addresses = '127.0.0.1'\n"
        printf "unix_socket_directories = '%s'\n" "$SOCKDIR"
        printf 'max_connections = 100\n'
        printf "log_line_prefix = '%%m [%%p] %%q%%u@%%d '\n"
        if [ "${FOLIOD_PG_FAST:-0}" = 1 ]; then
            printf '# throw-away test cluster: durability off\n'
            printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
        fi
        printf "# the port is chosen at start (pg.sh start DIR PORT)\n"
        printf "include_if_exists = 'foliod-port.conf'\n"
    } >>"$DATA/postgresql.conf"
    log "cluster created in $DIR (superuser $SUPERUSER, trust on the local socket)"
}

ensure_database() {
    local psql=$BINDIR/psql port=$1 have
    [ -x "$psql" ] || psql=psql
    local args=(-X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$port" -U "$SUPERUSER" -d postgres)
    have=$(as_owner "$psql" "${args[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'") ||
        die "cannot query the cluster in $DIR on port $port"
    if [ "$have" != 1 ]; then
        as_owner "$psql" "${args[@]}" -c "CREATE DATABASE $DBNAME" || die "CREATE DATABASE $DBNAME failed"
        log "database $DBNAME created"
    fi
}

cmd_start() {
    check_dir_arg "${1:-}"
    check_port_arg "${2:-}"
    local port=$2 cur
    initialised || die "no cluster in $DIR (run: bash scripts/pg.sh init $DIR)"
    if running; then
        cur=$(current_port)
        if [ -n "$cur" ] && [ "$cur" != "$port" ]; then
            log "warning: already running in $DIR on port $cur, not $port"
            port=$cur
        else
            log "already running in $DIR on port $port"
        fi
    else
        printf 'port = %s\n' "$port" >"$DATA/foliod-port.conf"
        [ -n "$RUNAS" ] && chown "$RUNAS:" "$DATA/foliod-port.conf"
        chmod 600 "$DATA/foliod-port.conf"
        if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$REAL/postgres.log" -w -t 60 -s start >&2; then
            log "start failed; last lines of $REAL/postgres.log:"
            tail -n 20 "$REAL/postgres.log" >&2 || true
            exit 1
        fi
        log "started in $DIR on port $port (log: $DIR/postgres.log)"
    fi
    ensure_database "$port"
    conninfo "$port"
}

cmd_stop() {
    check_dir_arg "$@"
    if ! initialised; then
        log "no cluster in $DIR"
        return 0
    fi
    if ! running; then
        log "not running in $DIR"
        return 0
    fi
    if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 -s stop >&2; then
        log "fast shutdown failed; trying immediate shutdown"
        as_owner "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w -t 30 -s stop >&2 || die "could not stop the cluster in $DIR"
    fi
    log "stopped in $DIR"
}

cmd_status() {
    check_dir_arg "$@"
    if ! initialised; then
        log "no cluster in $DIR"
        exit 4
    fi
    if running; then
        local port
        port=$(current_port)
        log "running in $DIR on port $port (pid $(sed -n 1p "$DATA/postmaster.pid"))"
        conninfo "$port"
        exit 0
    fi
    log "not running in $DIR"
    exit 3
}

cmd_conninfo() {
    check_dir_arg "${1:-}"
    local port=${2:-}
    [ -n "$port" ] || port=$(current_port)
    check_port_arg "$port"
    conninfo "$port"
}

cmd_destroy() {
    check_dir_arg "$@"
    if [ ! -e "$DIR" ] && [ ! -L "$DIR" ]; then
        return 0
    fi
    cmd_stop "$1"
    if [ -d "$REAL" ] && ! [ -f "$REAL/$MARKER" ] && ! [ -f "$DATA/PG_VERSION" ]; then
        die "$REAL does not look like a cluster made by pg.sh; not removing it"
    fi
    rm -rf "$REAL"
    if [ -L "$DIR" ]; then rm -f "$DIR"; fi
    log "removed $DIR"
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
init | start | stop | status | conninfo | destroy) BINDIR=$(find_bindir) ;;
-h | --help | help) usage ;;
*) usage ;;
esac
case $sub in
init) [ $# -eq 1 ] || usage; cmd_init "$1" ;;
start) [ $# -eq 2 ] || usage; cmd_start "$1" "$2" ;;
stop) [ $# -eq 1 ] || usage; cmd_stop "$1" ;;
status) [ $# -eq 1 ] || usage; cmd_status "$1" ;;
conninfo)
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
    cmd_conninfo "$@"
    ;;
destroy) [ $# -eq 1 ] || usage; cmd_destroy "$1" ;;
esac
