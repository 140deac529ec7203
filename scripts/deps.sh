#!/usr/bin/env bash
# Install the Debian packages foliod needs to build, test and run, only those missing.
#   bash scripts/deps.sh
# As root it installs what is missing with apt-get; otherwise it prints the one command to run
# and exits 1. Silent when everything is present. FOLIOD_SKIP_DEPS=1 skips the check.
set -euo pipefail

PACKAGES=(
    gcc make pkg-config
    libevent-dev libjansson-dev libcmocka-dev libpq-dev libssl-dev libhpdf-dev
    openssl ca-certificates
    postgresql-15 postgresql-client-15
    clang libclang-rt-14-dev
)

if [ "${FOLIOD_SKIP_DEPS:-0}" = 1 ]; then
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found: this script knows Debian 12 only." >&2
    echo "deps.sh: install the equivalents of: ${PACKAGES[*]} (or set FOLIOD_SKIP_DEPS=1)" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != installed ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: install them with:" >&2
    echo "sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi

echo "deps.sh: installing missing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -q)
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

# Check again: a package that apt could not install must not pass silently.
still=()
for p in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || still+=("$p")
done
if [ "${#still[@]}" -ne 0 ]; then
    echo "deps.sh: still missing after apt-get install: ${still[*]}" >&2
    exit 1
fi
