#!/usr/bin/env bash
# Development TLS files for foliod, made with the openssl command (EC P-256 keys).
#   bash scripts/tls.sh DIR [OUTLET...]
# Creates in DIR, reusing every file that is still good (present, key matches, signed by the
# current CA, not about to expire):
#   ca.crt ca.key                 the development CA
#   server.crt server.key         CN=localhost, SAN DNS:localhost IP:127.0.0.1, serverAuth
#   outlet-CODE.crt .key          per outlet: CN=CODE, O=foliod demo, clientAuth
# and for the tests:
#   foreign-ca.crt .key           another CA, which foliod must not trust
#   foreign-client.crt .key       CN=REST signed by the foreign CA
#   expired-REST.crt .key         CN=REST signed by the development CA, expired in 2020
# Keys are mode 600. Nothing here is fit for production.
set -euo pipefail

PROG=tls.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[ $# -ge 1 ] || die "usage: bash scripts/tls.sh DIR [OUTLET...]"
DIR=$1
shift
for o in "$@"; do
    [[ $o =~ ^[A-Za-z0-9_-]+$ ]] || die "bad outlet code '$o' (letters, digits, _ and - only)"
done
command -v openssl >/dev/null 2>&1 || die "openssl not found (bash scripts/deps.sh)"

CA_DAYS=3650
LEAF_DAYS=825
ORG="foliod demo"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

CNF=$TMP/openssl.cnf
cat >"$CNF" <<'EOF'
[req]
distinguished_name = req_dn
[req_dn]

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

created=0
reused=0

serial() { printf '0x%s\n' "$(openssl rand -hex 15)"; }

new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) ||
        die "could not create key $1"
    chmod 600 "$1"
}

# The certificate $1 exists, its key $2 exists and belongs to it.
pair_ok() {
    [ -s "$1" ] && [ -s "$2" ] || return 1
    local a b
    a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
    b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
    [ -n "$a" ] && [ "$a" = "$b" ]
}

# Still valid for at least a day.
fresh() { openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

# $1 verifies against CA file $2 (any extra arguments go to openssl verify).
signed_by() {
    local crt=$1 ca=$2
    shift 2
    openssl verify "$@" -CAfile "$ca" "$crt" >/dev/null 2>&1
}

ensure_ca() { # NAME SUBJECT
    local crt=$DIR/$1.crt key=$DIR/$1.key
    if pair_ok "$crt" "$key" && fresh "$crt" && signed_by "$crt" "$crt"; then
        reused=$((reused + 1))
        return 0
    fi
    new_key "$key"
    openssl req -config "$CNF" -new -x509 -key "$key" -subj "$2" -sha256 -days "$CA_DAYS" \
        -set_serial "$(serial)" -extensions ca_ext -out "$crt.tmp" 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; die "could not create $crt"; }
    mv "$crt.tmp" "$crt"
    chmod 644 "$crt"
    created=$((created + 1))
}

# NAME CA-NAME SUBJECT EXTENSIONS: a certificate signed by CA-NAME, valid from now on.
ensure_leaf() {
    local crt=$DIR/$1.crt key=$DIR/$1.key ca=$DIR/$2.crt cakey=$DIR/$2.key
    if pair_ok "$crt" "$key" && fresh "$crt" && signed_by "$crt" "$ca"; then
        reused=$((reused + 1))
        return 0
    fi
    new_key "$key"
    openssl req -config "$CNF" -new -key "$key" -subj "$3" -out "$TMP/$1.csr" 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; die "could not create a request for $crt"; }
    openssl x509 -req -in "$TMP/$1.csr" -CA "$ca" -CAkey "$cakey" -set_serial "$(serial)" \
        -sha256 -days "$LEAF_DAYS" -extfile "$CNF" -extensions "$4" -out "$crt.tmp" 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; die "could not sign $crt"; }
    mv "$crt.tmp" "$crt"
    chmod 644 "$crt"
    created=$((created + 1))
}

# NAME CA-NAME SUBJECT: a client certificate whose validity lies entirely in the past.
ensure_expired() {
    local crt=$DIR/$1.crt key=$DIR/$1.key ca=$DIR/$2.crt cakey=$DIR/$2.key
    if pair_ok "$crt" "$key" && signed_by "$crt" "$ca" -no_check_time && ! fresh "$crt"; then
        reused=$((reused + 1))
        return 0
    fi
    new_key "$key"
    openssl req -config "$CNF" -new -key "$key" -subj "$3" -out "$TMP/$1.csr" 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; die "could not create a request for $crt"; }
    # `openssl x509 -req` cannot set a start date before OpenSSL 3.4; `openssl ca` can.
    local cadir=$TMP/ca-$1
    mkdir -p "$cadir/new"
    : >"$cadir/index.txt"
    openssl rand -hex 15 >"$cadir/serial"
    cat >"$cadir/ca.cnf" <<EOF
[ca]
default_ca = dev_ca
[dev_ca]
database = $cadir/index.txt
new_certs_dir = $cadir/new
serial = $cadir/serial
default_md = sha256
policy = any_policy
unique_subject = no
email_in_dn = no
copy_extensions = none
[any_policy]
organizationName = optional
commonName = supplied
EOF
    openssl ca -batch -config "$cadir/ca.cnf" -cert "$ca" -keyfile "$cakey" -in "$TMP/$1.csr" \
        -startdate 200101000000Z -enddate 200201000000Z -notext \
        -extfile "$CNF" -extensions client_ext -out "$crt.tmp" >"$TMP/err" 2>&1 ||
        { cat "$TMP/err" >&2; die "could not sign $crt"; }
    mv "$crt.tmp" "$crt"
    chmod 644 "$crt"
    created=$((created + 1))
}

ensure_ca ca "/O=$ORG/CN=foliod development CA"
ensure_leaf server ca "/O=$ORG/CN=localhost" server_ext
for o in "$@"; do
    ensure_leaf "outlet-$o" ca "/O=$ORG/CN=$o" client_ext
done
ensure_ca foreign-ca "/O=not foliod/CN=foreign test CA"
ensure_leaf foreign-client foreign-ca "/O=$ORG/CN=REST" client_ext
ensure_expired expired-REST ca "/O=$ORG/CN=REST"

log "$DIR: $created file pairs created, $reused reused"
