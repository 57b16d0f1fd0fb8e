#!/bin/sh
# Generates a throw-away CA and a server certificate for localhost and 127.0.0.1 (with openssl),
# for the TLS examples. Nothing generated here is kept in the source tree.
#
#   certs.sh <dir>     writes <dir>/ca.pem, <dir>/server.pem, <dir>/server.key
set -eu
[ $# -eq 1 ] || { echo "usage: $0 <dir>" >&2; exit 2; }
dir=$1
command -v openssl >/dev/null || { echo "openssl is not installed; 'make test' installs it" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
rm -f ca.* server.*
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.pem -subj "/CN=libsession example CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl ca.key
echo "test CA and server certificate in $dir"
