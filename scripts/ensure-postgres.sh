#!/usr/bin/env bash
# Sourced by scripts/test.sh: makes sure a PostgreSQL server is reachable for the tests and exports
# TEST_DATABASE_URL. Order: TEST_DATABASE_URL, else DATABASE_URL, else 127.0.0.1:5432 (user postgres), else a
# throwaway cluster started here with initdb/pg_ctl as an unprivileged user (installing Debian's `postgresql`
# package first when running as root and it is missing). It says what it did.

pg_reachable() { # URL
  command -v psql >/dev/null 2>&1 || return 1
  PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

find_pg_bin() { # NAME
  local p
  p=$(command -v "$1" 2>/dev/null) && { echo "$p"; return 0; }
  p=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$p" ] && { echo "$p"; return 0; }
  return 1
}

start_throwaway_cluster() {
  local initdb pg_ctl runas dir port
  if ! initdb=$(find_pg_bin initdb); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "ensure-postgres: installing the postgresql package (no server binaries found)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      initdb=$(find_pg_bin initdb) || return 1
    else
      return 1
    fi
  fi
  pg_ctl=$(dirname "$initdb")/pg_ctl
  dir=$(mktemp -d /tmp/flux-test-pg.XXXXXX)
  port=55432
  runas=()
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    runas=(runuser -u postgres --)
  fi
  "${runas[@]}" "$initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null || return 1
  "${runas[@]}" "$pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null || return 1
  FLUX_TEST_PG_CTL=("${runas[@]}" "$pg_ctl" -D "$dir/data")
  trap 'echo "ensure-postgres: stopping the throwaway cluster"; "${FLUX_TEST_PG_CTL[@]}" -m fast stop >/dev/null 2>&1; rm -rf '"$dir"'' EXIT
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "ensure-postgres: started a throwaway PostgreSQL cluster on 127.0.0.1:$port (data in $dir, removed at exit)"
}

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  pg_reachable "$TEST_DATABASE_URL" || echo "ensure-postgres: warning: TEST_DATABASE_URL is not reachable" >&2
elif [ -n "${DATABASE_URL:-}" ] && pg_reachable "$DATABASE_URL"; then
  export TEST_DATABASE_URL="$DATABASE_URL"
elif pg_reachable "postgres://postgres@127.0.0.1:5432/postgres"; then
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
elif start_throwaway_cluster; then
  :
else
  echo "ensure-postgres: no PostgreSQL reachable and none could be started." >&2
  echo "  Set TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB (a role allowed to create databases)," >&2
  echo "  or install PostgreSQL 14+ (Debian: apt-get install postgresql) and run this again." >&2
  exit 2
fi
