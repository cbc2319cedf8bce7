#!/usr/bin/env bash
# Start a throwaway PostgreSQL and Redis on loopback for the test suite, and print the
# environment to use them:   eval "$(scripts/test-services.sh start)"   ...   scripts/test-services.sh stop
# Set SERVICES_STATE to keep several independent pairs apart. Works as root (CI) or as a normal user with PostgreSQL installed. State lives under .services/.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${SERVICES_STATE:-$PWD/.services}"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  mkdir -p "$STATE"
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  command -v redis-server >/dev/null || {
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2; }

  PGDATA=$(mktemp -d /tmp/luohu-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
  PGPORT=$(free_port)
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c fsync=off -c synchronous_commit=off -c max_connections=200" >/dev/null
  createdb -h 127.0.0.1 -p "$PGPORT" -U postgres luohu_test
  echo "$PGBIN" > "$STATE/pgbin"; echo "$PGDATA" > "$STATE/pgdata"

  RPORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$RPORT" --daemonize yes --save '' --appendonly no \
    --dir "$STATE" --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log"
  for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

  echo "export DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/luohu_test"
  echo "export REDIS_URL=redis://127.0.0.1:$RPORT/0"
}

stop() {
  if [ -f "$STATE/pgdata" ]; then
    as_pg "$(cat "$STATE/pgbin")/pg_ctl" -D "$(cat "$STATE/pgdata")" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$(cat "$STATE/pgdata")"
  fi
  [ -f "$STATE/redis.pid" ] && kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
