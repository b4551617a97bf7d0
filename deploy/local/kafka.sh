#!/usr/bin/env bash
# Apache Kafka (KRaft, one node acting as broker and controller) from Maven Central jars and the local Java.
#   deploy/local/kafka.sh fetch|start|stop|status|reset
#   deploy/local/kafka.sh tool topics|console-consumer|consumer-groups|… ARGS  (the tools of Kafka's bin/ folder)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$LOCAL_DIR/kafka/pom.xml")"
LIBS_DIR="$REPO_ROOT/.cache/kafka-$KAFKA_VERSION/libs"
DATA_DIR="$STATE_DIR/kafka-data"
PIDFILE="$STATE_DIR/kafka.pid"
LOGFILE="$STATE_DIR/kafka.log"

fetch() {
  # .complete holds the pom's checksum: a pom that gained a jar (the tools) fetches again.
  local wanted
  wanted="$(sha256sum "$LOCAL_DIR/kafka/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$LIBS_DIR/.complete" && "$(cat "$LIBS_DIR/.complete")" == "$wanted" ]]; then return 0; fi
  log "fetching Apache Kafka $KAFKA_VERSION jars (broker and tools) from Maven Central"
  rm -rf "$LIBS_DIR"
  mvn -q -B -Dstyle.color=never -f "$LOCAL_DIR/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR"
  echo "$wanted" >"$LIBS_DIR/.complete"
}

java_bin() {
  # Kafka 4 brokers need Java 17 or newer; prefer JAVA_HOME, then the default java.
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME/bin/java"; else command -v java; fi
}

write_config() {
  cat >"$STATE_DIR/kafka.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  write_log4j2 "$STATE_DIR/kafka-log4j2.yaml" SYSTEM_OUT kafka.server.KafkaRaftServer
}

# write_log4j2 FILE TARGET [LOGGER...]: a log4j2 configuration that prints warnings and errors on the console
# stream TARGET (SYSTEM_OUT or SYSTEM_ERR), and the INFO lines too of each LOGGER named.
write_log4j2() {
  local file="$1" target="$2" logger
  shift 2
  cat >"$file" <<YAML
Configuration:
  Appenders:
    Console:
      name: CONSOLE
      target: $target
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: CONSOLE
YAML
  if (($#)); then echo "    Logger:" >>"$file"; fi
  for logger in "$@"; do printf '      - name: %s\n        level: INFO\n' "$logger" >>"$file"; done
}

start() {
  fetch
  if pid_alive "$PIDFILE"; then
    wait_for_port "$KAFKA_PORT" 60 kafka
    log "kafka already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  port_free "$KAFKA_PORT" kafka
  port_free "$KAFKA_CONTROLLER_PORT" kafka-controller
  write_config
  local java cp fresh=false
  java="$(java_bin)"
  cp="$LIBS_DIR/*"
  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    fresh=true
    log "formatting KRaft storage in $DATA_DIR"
    mkdir -p "$DATA_DIR"
    "$java" -cp "$cp" -Dlog4j2.configurationFile="$STATE_DIR/kafka-log4j2.yaml" kafka.tools.StorageTool format \
      --standalone -t "$("$java" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
      -c "$STATE_DIR/kafka.properties" >>"$LOGFILE" 2>&1 \
      || { log "kafka storage format failed; see $LOGFILE"; tail -20 "$LOGFILE" >&2; return 1; }
  fi
  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  # setsid: its own session, so a Ctrl-C meant for `make run` reaches it only through our stop.
  setsid "$java" -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE_DIR/kafka-log4j2.yaml" \
    -cp "$cp" kafka.Kafka "$STATE_DIR/kafka.properties" >>"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  if ! wait_for_port "$KAFKA_PORT" 90 kafka; then tail -30 "$LOGFILE" >&2; return 1; fi
  if $fresh; then
    # A fresh broker creates __consumer_offsets on the first group lookup; until its partitions are loaded,
    # every consumer that joins logs GroupCoordinatorNotAvailableError at ERROR (aiokafka). One lookup here (the
    # admin client retries until the coordinator answers) gets that done before any service joins.
    tool consumer-groups --bootstrap-server "127.0.0.1:$KAFKA_PORT" --describe --group khedmat-warm-up \
      >/dev/null 2>&1 || true
  fi
  log "kafka ready"
}

stop() { stop_pidfile "$PIDFILE" kafka; }

status() {
  if pid_alive "$PIDFILE"; then echo "kafka running (pid $(cat "$PIDFILE")) 127.0.0.1:$KAFKA_PORT"; else echo "kafka stopped"; return 1; fi
}

# tool NAME ARGS: run one of Kafka's command-line tools (what bin/kafka-NAME.sh runs) on the fetched jars.
tool() {
  local name="${1:-}" main
  shift || true
  case "$name" in
    topics) main=org.apache.kafka.tools.TopicCommand ;;
    console-consumer) main=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) main=org.apache.kafka.tools.ConsoleProducer ;;
    consumer-groups) main=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    configs) main=kafka.admin.ConfigCommand ;;
    get-offsets) main=org.apache.kafka.tools.GetOffsetShell ;;
    *)
      log "usage: kafka.sh tool topics|console-consumer|console-producer|consumer-groups|configs|get-offsets ARGS"
      return 2
      ;;
  esac
  fetch
  local java
  java="$(java_bin)"
  # The tools log through log4j2 too: warnings to stderr, so that stdout carries only what the tool prints.
  write_log4j2 "$STATE_DIR/tools-log4j2.yaml" SYSTEM_ERR
  "$java" -Xmx512m -Djava.awt.headless=true -Dlog4j2.configurationFile="$STATE_DIR/tools-log4j2.yaml" \
    -cp "$LIBS_DIR/*" "$main" "$@"
}

# topics [BOOTSTRAP]: one line per topic: partitions, replication, retention and cleanup policy (what
# kafka-topics --describe prints per partition, and kafka-configs --describe --all per setting, condensed).
topics() {
  local bootstrap="${1:-127.0.0.1:$KAFKA_PORT}" described configs
  described="$(tool topics --bootstrap-server "$bootstrap" --describe --exclude-internal)"
  configs="$(tool configs --bootstrap-server "$bootstrap" --describe --all --entity-type topics)"
  awk -v described="$described" '
    BEGIN {
      n = split(described, lines, "\n")
      for (i = 1; i <= n; i++) if (lines[i] ~ /^Topic: /) {
        split(lines[i], f, "\t"); t = substr(f[1], 8)
        for (j in f) { if (f[j] ~ /^PartitionCount:/) parts[t] = substr(f[j], 17); if (f[j] ~ /^ReplicationFactor:/) repl[t] = substr(f[j], 20) }
      }
      printf "%-26s %10s %11s  %-22s %s\n", "TOPIC", "PARTITIONS", "REPLICATION", "RETENTION", "CLEANUP"
    }
    /^All configs for topic / { t = $5 }
    $1 ~ /^retention\.ms=/ { split($1, kv, "="); ms = kv[2]; retention[t] = (ms == -1 ? "forever" : sprintf("%gh (%s ms)", ms / 3600000, ms)) }
    $1 ~ /^cleanup\.policy=/ { split($1, kv, "="); cleanup[t] = kv[2] }
    END { for (t in parts) printf "%-26s %10s %11s  %-22s %s\n", t, parts[t], repl[t], retention[t], cleanup[t] | "sort" }
  ' <<<"$configs"
}

reset() { stop; rm -rf "$DATA_DIR"; log "kafka data removed"; }

"${1:-start}" "${@:2}"
