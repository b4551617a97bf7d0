#!/usr/bin/env bash
# Jaeger v2 (all in one: OTLP receiver, in-memory storage, UI) for local runs, built once from its Go module.
#   deploy/local/jaeger.sh build|start|stop|status
# The build (a few minutes, about 2 GB of Go module and build cache) happens on the first `make run` only and is
# cached in .cache/bin/jaeger; `make test` never needs it (the e2e trace test has its own OTLP receiver).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

JAEGER_VERSION="v1.76.0" # the module's tag of the Jaeger v2 binary (cmd/jaeger)
BINARY="$REPO_ROOT/.cache/bin/jaeger"
PIDFILE="$STATE_DIR/jaeger.pid"
LOGFILE="$STATE_DIR/jaeger.log"
UI_PORT=16686
OTLP_HTTP_PORT=4318

build() {
  if [[ -x "$BINARY" ]]; then return 0; fi
  log "building Jaeger $JAEGER_VERSION from the Go module proxy (once; cached in .cache/bin)"
  mkdir -p "$(dirname "$BINARY")"
  # A module of our own pins it (deploy/local/jaeger/go.mod): `go install pkg@version` refuses Jaeger's module,
  # whose go.mod has replace directives.
  (cd "$LOCAL_DIR/jaeger" && go build -o "$BINARY" github.com/jaegertracing/jaeger/cmd/jaeger)
}

start() {
  build
  if pid_alive "$PIDFILE"; then
    log "jaeger already running (pid $(cat "$PIDFILE")): UI http://127.0.0.1:$UI_PORT"
    return 0
  fi
  port_free "$OTLP_HTTP_PORT" jaeger
  port_free "$UI_PORT" jaeger
  log "starting jaeger (OTLP 127.0.0.1:4317 and :$OTLP_HTTP_PORT, UI :$UI_PORT)"
  nohup "$BINARY" >"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
  wait_for_port "$UI_PORT" 60 jaeger
  wait_for_port "$OTLP_HTTP_PORT" 60 jaeger
  log "jaeger ready: http://127.0.0.1:$UI_PORT"
}

stop() { stop_pidfile "$PIDFILE" jaeger; }

status() {
  if pid_alive "$PIDFILE"; then echo "jaeger running (pid $(cat "$PIDFILE")) UI http://127.0.0.1:$UI_PORT"; else echo "jaeger stopped"; return 1; fi
}

"${1:-start}"
