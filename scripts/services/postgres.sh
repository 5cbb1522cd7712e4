# Starts a project-local PostgreSQL server for the cluster tests and exports
# HISTODIFF_TEST_PG_URL (a role that may create databases: each test makes its own).
#
# Sourced by scripts/test.sh; may also be run directly (`bash scripts/services/postgres.sh`
# prints the export line). Idempotent: installs the server from Debian only when absent,
# initialises the cluster once under target/services/pg, and a second call only checks
# that the server answers (about a second). Fails loudly: the cluster tests never skip.
#
# Settings (environment): HISTODIFF_PG_PORT (default 55432), HISTODIFF_SERVICES_DIR
# (default <repo>/target/services).

histodiff_pg_fail() {
  echo "postgres.sh: $*" >&2
  return 1
}

# The newest installed server's bin directory (Debian keeps one per major version).
histodiff_pg_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

histodiff_pg_install() {
  histodiff_pg_bindir >/dev/null && return 0
  echo "postgres.sh: installing postgresql from Debian (first time only)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || { histodiff_pg_fail "apt-get update failed"; return 1; }
  # No init system here: keep the package from starting the distribution's own cluster.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
  local rc=$?
  [ "$made_policy" -eq 1 ] && $sudo rm -f "$policy"
  [ "$rc" -eq 0 ] || { histodiff_pg_fail "apt-get install postgresql failed"; return 1; }
  histodiff_pg_bindir >/dev/null || { histodiff_pg_fail "no initdb under /usr/lib/postgresql after install"; return 1; }
}

# Runs a command as the server's owner: `postgres` when we are root (the server refuses
# to run as root), ourselves otherwise.
histodiff_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

histodiff_pg_init() {
  local bindir="$1" data="$2"
  [ -f "$data/PG_VERSION" ] && return 0
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data" "$(dirname "$data")"
  chmod 700 "$data"
  histodiff_pg_as_owner "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 \
    --no-instructions >"$data.initdb.log" 2>&1 ||
    { cat "$data.initdb.log" >&2; histodiff_pg_fail "initdb failed in $data"; return 1; }
}

histodiff_pg_start() {
  local bindir="$1" data="$2" port="$3" sock="$4"
  if histodiff_pg_as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$sock"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$sock"
  # Loopback only; fsync off because the test data is disposable and CI disks are slow.
  histodiff_pg_as_owner "$bindir/pg_ctl" -D "$data" -l "$data/../pg.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c fsync=off -c max_connections=200" \
    >/dev/null || { tail -n 30 "$data/../pg.log" >&2; histodiff_pg_fail "server did not start (log: $data/../pg.log)"; return 1; }
}

# The test role may create databases (one per test) and owns them.
histodiff_pg_role() {
  local bindir="$1" port="$2" sock="$3"
  histodiff_pg_as_owner "$bindir/psql" -h "$sock" -p "$port" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -q >/dev/null <<'SQL' || { histodiff_pg_fail "could not create the test role"; return 1; }
SELECT 'CREATE ROLE histodiff LOGIN CREATEDB PASSWORD ''histodiff'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'histodiff') \gexec
SELECT 'CREATE DATABASE histodiff OWNER histodiff'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'histodiff') \gexec
SQL
}

histodiff_pg_main() {
  local root services port data sock bindir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  services="${HISTODIFF_SERVICES_DIR:-$root/target/services}"
  port="${HISTODIFF_PG_PORT:-55432}"
  histodiff_pg_install || return 1
  mkdir -p "$services/pg"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$services"; then
    # A checkout under /root (mode 700) is out of the postgres user's reach.
    services="/var/tmp/histodiff-services-$(printf '%s' "$root" | md5sum | cut -c1-8)"
    mkdir -p "$services/pg"
    echo "postgres.sh: ${HISTODIFF_SERVICES_DIR:-$root/target/services} is out of the postgres user's reach; data in $services/pg" >&2
  fi
  data="$services/pg/data"
  sock="$services/pg/run"
  bindir="$(histodiff_pg_bindir)"
  histodiff_pg_init "$bindir" "$data" || return 1
  histodiff_pg_start "$bindir" "$data" "$port" "$sock" || return 1
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30 ||
    { histodiff_pg_fail "server on 127.0.0.1:$port does not answer"; return 1; }
  histodiff_pg_role "$bindir" "$port" "$sock" || return 1
  export HISTODIFF_TEST_PG_URL="postgres://histodiff:histodiff@127.0.0.1:$port/histodiff"
  echo "postgres.sh: ready at $HISTODIFF_TEST_PG_URL" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  histodiff_pg_main
  echo "export HISTODIFF_TEST_PG_URL=$HISTODIFF_TEST_PG_URL"
else
  histodiff_pg_main
fi
