#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package.
#
#   scripts/pg.sh install            install the package if it is missing (apt-get, as root)
#   scripts/pg.sh start DIR PORT     create (if new) and start a cluster in DIR on 127.0.0.1:PORT
#                                    and a Unix socket in DIR; prints its libpq connection string
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
    as_pg "$b/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on" start >/dev/null
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
