#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server on loopback, for tern-sink's tests.
#   scripts/postgres.sh start   initdb (first time) and start it; already running: ok
#   scripts/postgres.sh stop    stop it (fast shutdown); not running: ok
#   scripts/postgres.sh restart stop it and start it again on its data and port (restart tests)
#   scripts/postgres.sh env     print `export TERN_TEST_POSTGRES='host=127.0.0.1 port=P ...'`
#   scripts/postgres.sh status  say whether it runs
# Data, socket and log live in target/services/postgres/ (the port it listens on in
# target/services/postgres/port). It tries port 55432 first, then the next free one
# (TERN_POSTGRES_PORT sets the first port tried). Trust authentication, user postgres.
# As root it runs the server as the `postgres` user (PostgreSQL refuses to run as root);
# otherwise as the calling user.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="$repo/target/services/postgres"
data="$base/data"
log="$base/server.log"
port_file="$base/port"
say() { echo "postgres.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

ensure_installed() {
  if bin="$(find_bin)"; then
    return 0
  fi
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      die "PostgreSQL 15 is not installed and this is not root: run 'apt-get install -y postgresql-15' as root"
    sudo_cmd=(sudo)
  fi
  say "installing postgresql-15 (apt)"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq postgresql-15 >/dev/null
  bin="$(find_bin)" || die "postgresql-15 installed but no pg_ctl under /usr/lib/postgresql/*/bin"
}

# Runs a PostgreSQL binary as the server's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [ -f "$data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  ensure_installed
  if running; then
    say "already running on port $(cat "$port_file" 2>/dev/null || echo '?') ($data)"
    return 0
  fi
  mkdir -p "$base"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user (installing postgresql-15 creates it)"
    # The server runs as postgres: it must own its directory and reach it from /.
    chown postgres: "$base"
    local dir="$base"
    while [ "$dir" != / ]; do
      dir="$(dirname "$dir")"
      runuser -u postgres -- test -x "$dir" ||
        die "user postgres cannot enter $dir (needs o+x) to reach $base"
    done
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    as_owner "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 >"$base/initdb.log" 2>&1 ||
      die "initdb failed, see $base/initdb.log"
  fi
  local port="${TERN_POSTGRES_PORT:-55432}" tries=0
  while port_in_use "$port"; do
    port=$((port + 1))
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || die "no free port from ${TERN_POSTGRES_PORT:-55432} on"
  done
  as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null ||
    die "the server did not start, see $log"
  echo "$port" >"$port_file"
  say "running on 127.0.0.1:$port ($data)"
}

stop() {
  if ! bin="$(find_bin)" || [ ! -f "$data/PG_VERSION" ]; then
    return 0
  fi
  if running; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || die "pg_ctl stop failed, see $log"
    say "stopped"
  fi
}

env_line() {
  [ -f "$port_file" ] || die "not started: run scripts/postgres.sh start first"
  echo "export TERN_TEST_POSTGRES='host=127.0.0.1 port=$(cat "$port_file") user=postgres dbname=postgres'"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart)
    # The same server again (its data and port kept): for tests of a destination that goes
    # away and comes back.
    [ -f "$port_file" ] || die "not started: run scripts/postgres.sh start first"
    stop
    TERN_POSTGRES_PORT="$(cat "$port_file")" start
    ;;
  env) env_line ;;
  status)
    if bin="$(find_bin)" && running; then
      echo "running on port $(cat "$port_file")"
    else
      echo "not running"
      exit 3
    fi
    ;;
  *) die "usage: scripts/postgres.sh start|stop|restart|env|status" ;;
esac
