# Shared settings for the local servers: sourced by kafka.sh, redis.sh, postgres.sh and up.sh/down.sh.
# Everything lives under the repo's ignored .cache/local folder, so a clean clone starts from nothing.
set -euo pipefail
LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
STATE_DIR="${KHEDMAT_LOCAL_STATE:-$REPO_ROOT/.cache/local}"
KAFKA_PORT="${KHEDMAT_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KHEDMAT_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${KHEDMAT_REDIS_PORT:-6380}"
POSTGRES_PORT="${KHEDMAT_POSTGRES_PORT:-5433}"
mkdir -p "$STATE_DIR"

log() { printf '[local] %s\n' "$*" >&2; }

# wait_for_port PORT SECONDS NAME: poll until something accepts TCP connections on 127.0.0.1:PORT.
wait_for_port() {
  local port="$1" seconds="$2" name="$3" i
  for ((i = 0; i < seconds * 5; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  log "$name did not open 127.0.0.1:$port within ${seconds}s"
  return 1
}

# port_free PORT NAME: refuse to start when something else already listens there (it would answer our
# readiness probe and we would silently use a stranger's server).
port_free() {
  local port="$1" name="$2"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "$name: 127.0.0.1:$port is already taken by another process; stop it or set another port"
    return 1
  fi
}

# pid_alive PIDFILE: the process recorded in PIDFILE is still running.
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile PIDFILE NAME: end exactly the process this script started, then forget it.
stop_pidfile() {
  local pidfile="$1" name="$2" pid i
  if pid_alive "$pidfile"; then
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30s; killing"; kill -9 "$pid" || true; fi
    log "$name stopped"
  fi
  rm -f "$pidfile"
}
