#!/usr/bin/env bash
# Debian's Redis server on its own port and data folder (never the system instance).
#   deploy/local/redis.sh install|start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

DATA_DIR="$STATE_DIR/redis-data"
PIDFILE="$STATE_DIR/redis.pid"
LOGFILE="$STATE_DIR/redis.log"

install() {
  if command -v redis-server >/dev/null; then return 0; fi
  log "installing redis-server with apt-get"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
}

start() {
  install
  if pid_alive "$PIDFILE"; then
    wait_for_port "$REDIS_PORT" 30 redis
    log "redis already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  port_free "$REDIS_PORT" redis
  mkdir -p "$DATA_DIR"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA_DIR" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$LOGFILE" --save "" --appendonly no --protected-mode yes
  wait_for_port "$REDIS_PORT" 30 redis
  for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  log "redis ready"
}

stop() { stop_pidfile "$PIDFILE" redis; }

status() {
  if pid_alive "$PIDFILE"; then echo "redis running (pid $(cat "$PIDFILE")) 127.0.0.1:$REDIS_PORT"; else echo "redis stopped"; return 1; fi
}

"${1:-start}"
