#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package.
#
#   scripts/pg.sh install            install the package if it is missing (apt-get, as root)
#   scripts/pg.sh start DIR PORT     create (if new) and start a cluster in DIR on 127.0.0.1:PORT
#                                    and a Unix socket in DIR; prints its libpq connection string.
#                                    TLS is on too (plain connections still accepted): DIR/tls/
#                                    holds a test CA (ca.crt), the server's certificate for the
#                                    name "localhost" only, and a second CA (other-ca.crt) that
#                                    signed nothing the server has.
#   scripts/pg.sh stop DIR           stop it (fast shutdown)
#
# Trust authentication on loopback only: the cluster holds test data and lives as long as the
# test run. As root, the server runs as the `postgres` user (initdb refuses root).
set -euo pipefail

bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$d" ] || { echo "pg.sh: PostgreSQL is not installed; run scripts/pg.sh install" >&2; exit 1; }
  echo "$d"
}
# A CA, a server certificate it signs for DNS name "localhost" (not 127.0.0.1, so that host-name
# checks can be seen failing), and an unrelated CA; 30 days, P-256.
tls_material() {
  local t="$1" ca
  mkdir -p "$t"
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=dfserve test $ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$t/$ca.key" -out "$t/$ca.crt" 2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 30 \
    -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  chmod 600 "$t"/*.key
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-}" in
  install)
    if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[pg] installing postgresql (apt-get)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
      else
        echo "pg.sh: please install Debian's postgresql package, then re-run" >&2
        exit 1
      fi
    fi
    ;;
  start)
    dir="$2" port="$3" b="$(bin)"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" && chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$b/initdb" -D "$dir" -U dfserve --auth=trust -E UTF8 --no-instructions >/dev/null
    fi
    if [ ! -f "$dir/tls/server.crt" ]; then
      tls_material "$dir/tls"
      [ "$(id -u)" = 0 ] && chown -R postgres "$dir/tls"
    fi
    as_pg "$b/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on -c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key" start >/dev/null
    echo "host=127.0.0.1 port=$port user=dfserve"
    ;;
  stop)
    dir="$2" b="$(bin)"
    [ -f "$dir/postmaster.pid" ] && as_pg "$b/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *)
    echo "usage: scripts/pg.sh install | start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
