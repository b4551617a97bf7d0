#!/usr/bin/env bash
# Debian's PostgreSQL as a cluster of our own: its own data folder, port and socket folder, run by pg_ctl as the
# `postgres` OS user (never the system cluster on 5432, which this script neither needs nor touches).
#   deploy/local/postgres.sh install|start|stop|status|reset
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

DATA_DIR="$STATE_DIR/postgres-data"
RUN_DIR="$STATE_DIR/postgres-run" # unix socket and lock file (never /var/run/postgresql)
LOGFILE="$STATE_DIR/postgres.log"
DB_NAME=khedmat
DB_ROLE=khedmat
SUPERUSER=postgres # the cluster's bootstrap superuser; the desk and the tests connect as $DB_ROLE

installed_bindirs() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | xargs -r -n1 dirname | sort -V; }

install() {
  if [[ -n "$(installed_bindirs)" ]]; then return 0; fi
  log "installing postgresql with apt-get"
  apt-get update -q >/dev/null
  # postgresql-common first, told not to create (and start) the system's `main` cluster on 5432: we never use it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-common >/dev/null
  if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
    sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
}

# bindir: the server binaries that match the cluster's version (PG_VERSION), else the newest installed.
bindir() {
  local dirs version
  dirs="$(installed_bindirs)"
  if [[ -f "$DATA_DIR/PG_VERSION" ]]; then
    version="$(cat "$DATA_DIR/PG_VERSION")"
    if [[ -x "/usr/lib/postgresql/$version/bin/initdb" ]]; then echo "/usr/lib/postgresql/$version/bin"; return 0; fi
    log "postgres: the cluster in $DATA_DIR is version $version, which is not installed; run '$0 reset'"
    return 1
  fi
  if [[ -z "$dirs" ]]; then log "postgres: no /usr/lib/postgresql/*/bin/initdb; run '$0 install'"; return 1; fi
  tail -1 <<<"$dirs"
}

# as_pg CMD...: initdb and pg_ctl refuse root, so as root they run as the `postgres` OS user; as anyone else,
# as that user. From / so that no unreadable working directory gets in the way.
as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# running: this cluster's postmaster (the pid in its postmaster.pid) is alive.
running() {
  [[ -f "$DATA_DIR/postmaster.pid" ]] || return 1
  local bin
  bin="$(bindir 2>/dev/null)" || return 1
  as_pg "$bin/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

server_pid() { head -1 "$DATA_DIR/postmaster.pid" 2>/dev/null || echo "?"; }

prepare_dirs() {
  mkdir -p "$DATA_DIR" "$RUN_DIR"
  touch "$LOGFILE"
  if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres:postgres "$DATA_DIR" "$RUN_DIR" "$LOGFILE"
    if ! runuser -u postgres -- test -w "$DATA_DIR"; then
      log "postgres: the OS user postgres cannot reach $DATA_DIR (every parent folder must be traversable, o+x)"
      return 1
    fi
  fi
  chmod 700 "$DATA_DIR"
  # A unix socket path is limited to 107 bytes.
  local socket="$RUN_DIR/.s.PGSQL.$POSTGRES_PORT"
  if ((${#socket} > 100)); then
    log "postgres: socket path $socket is too long for a unix socket; set KHEDMAT_LOCAL_STATE to a shorter folder"
    return 1
  fi
}

init_cluster() {
  local bin="$1"
  if [[ -f "$DATA_DIR/PG_VERSION" ]]; then return 0; fi
  log "initialising a PostgreSQL $(basename "$(dirname "$bin")") cluster in $DATA_DIR"
  as_pg "$bin/initdb" -D "$DATA_DIR" -U "$SUPERUSER" --encoding=UTF8 --no-locale \
    --auth-local=peer --auth-host=reject >>"$LOGFILE" 2>&1 \
    || { log "postgres initdb failed; see $LOGFILE"; tail -20 "$LOGFILE" >&2; return 1; }
  echo "include_if_exists = 'khedmat.conf'" >>"$DATA_DIR/postgresql.conf"
}

# write_config: rewritten at every start, so the port and folders always follow env.sh.
write_config() {
  cat >"$DATA_DIR/khedmat.conf" <<CONF
# Written by deploy/local/postgres.sh at every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = '$RUN_DIR'
unix_socket_permissions = 0700
max_connections = 200
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_min_messages = warning
CONF
  # Trust on 127.0.0.1 only (a local, throwaway server); the socket admits only the same OS user; nothing else.
  cat >"$DATA_DIR/pg_hba.conf" <<HBA
# Written by deploy/local/postgres.sh at every start; edits are lost.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 peer
host    all       all   127.0.0.1/32  trust
HBA
  if [[ "$(id -u)" -eq 0 ]]; then chown postgres:postgres "$DATA_DIR/khedmat.conf" "$DATA_DIR/pg_hba.conf"; fi
  chmod 600 "$DATA_DIR/khedmat.conf" "$DATA_DIR/pg_hba.conf"
}

wait_ready() {
  local bin="$1" i
  for ((i = 0; i < 300; i++)); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$SUPERUSER" -d postgres -t 1; then return 0; fi
    sleep 0.2
  done
  log "postgres did not accept connections on 127.0.0.1:$POSTGRES_PORT within 60s; see $LOGFILE"
  tail -20 "$LOGFILE" >&2
  return 1
}

psql_admin() {
  local bin="$1"
  shift
  "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$SUPERUSER" -d postgres "$@"
}

# ensure_database: the role and database the desk and the tests use (superuser: tests create and drop databases).
ensure_database() {
  local bin="$1"
  psql_admin "$bin" <<SQL
SELECT format('CREATE ROLE %I LOGIN SUPERUSER', '$DB_ROLE')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_ROLE')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

start() {
  install
  local bin
  bin="$(bindir)"
  if running; then
    wait_ready "$bin"
    ensure_database "$bin"
    log "postgres already running (pid $(server_pid)) on 127.0.0.1:$POSTGRES_PORT"
    return 0
  fi
  port_free "$POSTGRES_PORT" postgres
  prepare_dirs
  init_cluster "$bin"
  write_config
  log "starting postgres $(basename "$(dirname "$bin")") on 127.0.0.1:$POSTGRES_PORT"
  # pg_ctl starts the postmaster in a session of its own (a Ctrl-C meant for `make run` reaches it only through
  # our stop) and records its pid in $DATA_DIR/postmaster.pid, which stop and status use.
  as_pg "$bin/pg_ctl" start -D "$DATA_DIR" -l "$LOGFILE" -w -t 60 >/dev/null \
    || { log "postgres did not start; see $LOGFILE"; tail -20 "$LOGFILE" >&2; return 1; }
  wait_ready "$bin"
  ensure_database "$bin"
  log "postgres ready: postgresql://$DB_ROLE@127.0.0.1:$POSTGRES_PORT/$DB_NAME"
}

stop() {
  if ! running; then return 0; fi
  local bin pid
  bin="$(bindir)"
  pid="$(server_pid)"
  # pg_ctl -D signals exactly the postmaster recorded in this cluster's postmaster.pid.
  if ! as_pg "$bin/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t 30 >/dev/null; then
    log "postgres did not stop in 30s; stopping it immediately"
    as_pg "$bin/pg_ctl" stop -D "$DATA_DIR" -m immediate -w -t 30 >/dev/null || true
  fi
  log "postgres stopped (pid $pid)"
}

status() {
  if running; then
    echo "postgres running (pid $(server_pid)) 127.0.0.1:$POSTGRES_PORT"
  else
    echo "postgres stopped"
    return 1
  fi
}

reset() { stop; rm -rf "$DATA_DIR" "$RUN_DIR"; log "postgres data removed"; }

"${1:-start}"
