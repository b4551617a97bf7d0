#!/usr/bin/env bash
# Jaeger v2 (the `cmd/jaeger` binary of Go module github.com/jaegertracing/jaeger v1.75.0: OTLP receiver,
# in-memory storage, UI) for local runs, built once from the Go module proxy and cached in .cache/bin/jaeger.
#   deploy/local/jaeger.sh build|start|start-background|stop|status
# No registry serves a prebuilt Jaeger here, so the first build compiles it from source: 10 to 20 minutes (18 measured on a busy 2-core machine) and
# some 2 GB of Go module and build cache on a 2-core machine. `make run` uses start-background, so the desk does
# not wait for that build. `make test` never needs Jaeger (the e2e trace test has its own OTLP receiver).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_VERSION="$(sed -n "s:^\t$JAEGER_MODULE \(v[0-9.]*\).*:\1:p" "$LOCAL_DIR/jaeger/go.mod")"
BINARY="$REPO_ROOT/.cache/bin/jaeger"
CONFIG="$LOCAL_DIR/jaeger/config.yaml"
PIDFILE="$STATE_DIR/jaeger.pid"
LOGFILE="$STATE_DIR/jaeger.log"
BUILDER_PIDFILE="$STATE_DIR/jaeger-builder.pid"
BUILD_LOG="$STATE_DIR/jaeger-build.log"
UI_PORT=16686
OTLP_HTTP_PORT=4318
HEALTH_PORT=13133

build() {
  if [[ -x "$BINARY" ]]; then return 0; fi
  log "building Jaeger v2 (cmd/jaeger of Go module $JAEGER_VERSION) from the Go module proxy; cached in .cache/bin"
  mkdir -p "$(dirname "$BINARY")"
  local started=$SECONDS
  # A module of our own pins it (deploy/local/jaeger/go.mod): `go install pkg@version` refuses Jaeger's module,
  # whose go.mod has replace directives. The version is stamped the way Jaeger's own build does (its Makefile's
  # BUILD_INFO); without it the binary reports v0.0.0. Written to a temporary name first, so an interrupted
  # build never leaves a half-written binary that the next run would take for a built one.
  if ! (cd "$LOCAL_DIR/jaeger" && go build \
    -ldflags "-X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_VERSION" \
    -o "$BINARY.partial" "$JAEGER_MODULE/cmd/jaeger") >>"$BUILD_LOG" 2>&1; then
    log "jaeger build failed; the end of ${BUILD_LOG#"$REPO_ROOT"/}:"
    tail -20 "$BUILD_LOG" >&2
    return 1
  fi
  mv "$BINARY.partial" "$BINARY"
  log "jaeger built in $((SECONDS - started))s: $("$BINARY" version 2>/dev/null | grep -o '"gitVersion":"[^"]*"' || true)"
}

start() {
  build
  if pid_alive "$PIDFILE"; then
    log "jaeger already running (pid $(cat "$PIDFILE")): UI http://127.0.0.1:$UI_PORT"
    return 0
  fi
  port_free "$OTLP_HTTP_PORT" jaeger
  port_free "$UI_PORT" jaeger
  log "starting jaeger (OTLP 127.0.0.1:4317 and 127.0.0.1:$OTLP_HTTP_PORT, UI 127.0.0.1:$UI_PORT)"
  # setsid: its own session, so a Ctrl-C meant for `make run` reaches it only through our stop, after the
  # services have flushed their last spans to it.
  setsid "$BINARY" --config "$CONFIG" >"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_for_port "$HEALTH_PORT" 60 jaeger
  wait_for_port "$UI_PORT" 60 jaeger
  wait_for_port "$OTLP_HTTP_PORT" 60 jaeger
  log "jaeger ready: http://127.0.0.1:$UI_PORT"
}

# start-background: start now when built; otherwise build and then start in a session of its own, so the
# caller (make run) goes on at once. Its progress lines go to the caller's output, the compiler's to a file.
start-background() {
  if [[ -x "$BINARY" ]]; then
    start
    return
  fi
  if pid_alive "$BUILDER_PIDFILE"; then
    log "jaeger is already being built (pid $(cat "$BUILDER_PIDFILE"))"
    return 0
  fi
  log "jaeger is not built yet: building it in the background (10 to 20 minutes on 2 cores, once; output in" \
    "${BUILD_LOG#"$REPO_ROOT"/}); it starts when built, and traces sent before then are lost"
  setsid "${BASH_SOURCE[0]}" start </dev/null &
  echo $! >"$BUILDER_PIDFILE"
}

stop() {
  if pid_alive "$BUILDER_PIDFILE"; then
    # The builder and the compilers it runs share the session (and process group) setsid gave it.
    kill -TERM -- "-$(cat "$BUILDER_PIDFILE")" 2>/dev/null || true
    log "jaeger build stopped (it resumes from Go's build cache next time)"
  fi
  rm -f "$BUILDER_PIDFILE" "$BINARY.partial"
  stop_pidfile "$PIDFILE" jaeger
}

status() {
  if pid_alive "$PIDFILE"; then
    echo "jaeger running (pid $(cat "$PIDFILE")) UI http://127.0.0.1:$UI_PORT"
  elif pid_alive "$BUILDER_PIDFILE"; then
    echo "jaeger being built (pid $(cat "$BUILDER_PIDFILE")); see $BUILD_LOG"
    return 1
  else
    echo "jaeger stopped"
    return 1
  fi
}

"${1:-start}"
