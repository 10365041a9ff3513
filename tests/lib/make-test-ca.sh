#!/bin/sh
# tests/lib/make-test-ca.sh DIR: make the certificates of the TLS tests in DIR.
#
# The site CA is made and used with exactly the openssl commands of
# docs/certificates.md (a small `openssl ca` directory, P-256 keys). DIR gets:
#
#   site-ca/         the site CA: ca.cnf, ca.key, ca.pem, index.txt, serial,
#                    crlnumber, newcerts/
#   other-ca/        a second, unrelated CA made the same way
#   ca.pem, crl.pem  the site CA certificate and its CRL (revoked.pem listed)
#   node1.{key,pem}  server certificate: CN and SAN DNS node1.rems.test,
#                    SAN IP 127.0.0.1
#   agent-1.{key,pem}      client certificate, CN agent-1
#   agent-2.{key,pem}      client certificate, CN host-42 and
#                          SAN URI rems://agent/agent-2
#   other-agent.{key,pem}  CN agent-1, signed by the other CA
#   <id>.{key,pem}         for every id in $REMS_TEST_AGENTS (space
#                          separated): client certificate, CN <id>
#   expired.{key,pem}      CN agent-3, valid in January 2020 only
#   revoked.{key,pem}      CN agent-4, revoked in crl.pem
#   bad-id.{key,pem}       CN "not valid!", which is no valid agent id
#   bad-uri.{key,pem}      CN agent-6, SAN URI rems://agent/bad!id
#   two-uris.{key,pem}     CN agent-7, SAN URIs https://example.test/,
#                          rems://agent/agent-7 and rems://agent/agent-8
#   long-uri.{key,pem}     CN agent-9, SAN URI rems://agent/<65 characters>
#                          (a CN cannot be that long)
#
# Exits non-zero (set -e) when any openssl command fails.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"

# make_ca CADIR NAME: a CA directory for `openssl ca`, as in the docs.
make_ca() {
    cadir=$1
    mkdir -p "$cadir/newcerts"
    cat >"$cadir/ca.cnf" <<EOF
[ ca ]
default_ca = rems_ca

[ rems_ca ]
dir              = $cadir
database         = \$dir/index.txt
new_certs_dir    = \$dir/newcerts
certificate      = \$dir/ca.pem
private_key      = \$dir/ca.key
serial           = \$dir/serial
crlnumber        = \$dir/crlnumber
default_md       = sha256
default_days     = 365
default_crl_days = 30
policy           = policy_cn
unique_subject   = no
copy_extensions  = none

[ policy_cn ]
commonName = supplied

[ req ]
distinguished_name = req_dn

[ req_dn ]

[ ca_ext ]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
EOF
    : >"$cadir/index.txt"
    echo 1000 >"$cadir/serial"
    echo 1000 >"$cadir/crlnumber"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$cadir/ca.key" 2>/dev/null
    openssl req -config "$cadir/ca.cnf" -x509 -new -key "$cadir/ca.key" \
        -subj "/CN=$2" -days 3650 -sha256 -extensions ca_ext \
        -out "$cadir/ca.pem"
}

# node_ext FILE HOST [IP]: the extensions of a node (server) certificate.
node_ext() {
    san="DNS:$2"
    if [ $# -ge 3 ]; then
        san="$san, IP:$3"
    fi
    cat >"$1" <<EOF
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = $san
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
EOF
}

# agent_ext FILE [AGENT-ID]: the extensions of an agent (client) certificate;
# with AGENT-ID, a SAN URI rems://agent/AGENT-ID names the agent.
agent_ext() {
    cat >"$1" <<EOF
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
EOF
    if [ $# -ge 2 ]; then
        echo "subjectAltName         = URI:rems://agent/$2" >>"$1"
    fi
}

# issue CADIR NAME CN EXTFILE [openssl ca options...]: NAME.key, NAME.pem.
issue() {
    cadir=$1
    name=$2
    cn=$3
    ext=$4
    shift 4
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$out/$name.key" 2>/dev/null
    openssl req -new -key "$out/$name.key" -subj "/CN=$cn" \
        -out "$out/$name.csr"
    openssl ca -config "$cadir/ca.cnf" -batch -notext \
        -in "$out/$name.csr" -out "$out/$name.pem" -extfile "$ext" "$@" \
        2>/dev/null
    rm -f "$out/$name.csr"
}

make_ca "$out/site-ca" "rems test site CA"
make_ca "$out/other-ca" "rems test other CA"
cp "$out/site-ca/ca.pem" "$out/ca.pem"

node_ext "$out/node1.ext" node1.rems.test 127.0.0.1
agent_ext "$out/agent.ext"
agent_ext "$out/agent-2.ext" agent-2
agent_ext "$out/bad-uri.ext" 'bad!id'
agent_ext "$out/two-uris.ext"
echo "subjectAltName         = URI:https://example.test/, \
URI:rems://agent/agent-7, URI:rems://agent/agent-8" >>"$out/two-uris.ext"
agent_ext "$out/long-uri.ext" \
    a234567890123456789012345678901234567890123456789012345678901234X

issue "$out/site-ca" node1 node1.rems.test "$out/node1.ext"
issue "$out/site-ca" agent-1 agent-1 "$out/agent.ext"
issue "$out/site-ca" agent-2 host-42 "$out/agent-2.ext"
for id in ${REMS_TEST_AGENTS:-}; do
    issue "$out/site-ca" "$id" "$id" "$out/agent.ext"
done
issue "$out/other-ca" other-agent agent-1 "$out/agent.ext"
issue "$out/site-ca" expired agent-3 "$out/agent.ext" \
    -startdate 20200101000000Z -enddate 20200201000000Z
issue "$out/site-ca" revoked agent-4 "$out/agent.ext"
issue "$out/site-ca" bad-id 'not valid!' "$out/agent.ext"
issue "$out/site-ca" bad-uri agent-6 "$out/bad-uri.ext"
issue "$out/site-ca" two-uris agent-7 "$out/two-uris.ext"
issue "$out/site-ca" long-uri agent-9 "$out/long-uri.ext"

openssl ca -config "$out/site-ca/ca.cnf" -revoke "$out/revoked.pem" \
    -crl_reason keyCompromise 2>/dev/null
openssl ca -config "$out/site-ca/ca.cnf" -gencrl -out "$out/site-ca/crl.pem" \
    2>/dev/null
cp "$out/site-ca/crl.pem" "$out/crl.pem"
