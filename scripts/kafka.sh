#!/usr/bin/env bash
# A one-node Apache Kafka broker (KRaft: broker and controller in one JVM) on 127.0.0.1 for tests.
#   scripts/kafka.sh start   fetch the jars (once, cached), format a fresh data dir, start, wait until
#                            a topic can be created; prints the address
#   scripts/kafka.sh stop    stop it and wait until it is gone
#   scripts/kafka.sh restart stop it and start it again on its data and port (for restart tests)
#   scripts/kafka.sh env     print `export TERN_TEST_KAFKA=127.0.0.1:PORT` (use: eval "$(scripts/kafka.sh env)")
#   scripts/kafka.sh status  whether it runs, and where
# Everything lives under target/services/kafka: lib/ (jars from Maven Central, via scripts/kafka/pom.xml),
# data/ (the log dirs, new at every start), server.properties, broker.log, kafka.pid, port.
# Needs Java 17+ (`java`, or $JAVA) and Maven (`mvn`) for the first start.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$repo/target/services/kafka"
lib="$dir/lib"
pom="$repo/scripts/kafka/pom.xml"
pidfile="$dir/kafka.pid"
portfile="$dir/port"
java="${JAVA:-java}"
say() { echo "kafka: $*" >&2; }

running_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# The jars, copied once; the stamp holds the pom's hash, so a changed pom fetches again.
fetch_jars() {
  local want
  want="$(sha256sum "$pom" | awk '{print $1}')"
  if [ -f "$lib/.stamp" ] && [ "$(cat "$lib/.stamp")" = "$want" ]; then
    return 0
  fi
  install_for mvn maven
  say "fetching the Kafka jars with Maven into $lib"
  rm -rf "$lib.new"
  local args=(-q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$lib.new")
  # offline first (the local Maven repository may hold them all), then from Maven Central
  if ! mvn -o "${args[@]}" >/dev/null 2>&1; then
    rm -rf "$lib.new"
    mvn "${args[@]}" >"$dir/mvn.log" 2>&1 || { say "Maven failed; see $dir/mvn.log"; exit 1; }
  fi
  rm -rf "$lib"
  mv "$lib.new" "$lib"
  echo "$want" >"$lib/.stamp"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A Kafka cluster id: 16 random bytes, base64url without padding.
cluster_id() {
  python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))'
}

# Debian packages, installed when their command is missing (as scripts/setup.sh does for its own).
install_for() {
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  say "installing apt packages: $*"
  local sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
}

start() {
  mkdir -p "$dir"
  if pid="$(running_pid)"; then
    say "already running (pid $pid) on 127.0.0.1:$(cat "$portfile")"
    return 0
  fi
  install_for "$java" openjdk-17-jre-headless
  "$java" -version 2>&1 | head -n1 | grep -qE '"(1[7-9]|[2-9][0-9])' ||
    { say "Kafka 4 needs Java 17 or newer; set JAVA to one (found: $("$java" -version 2>&1 | head -n1))"; exit 1; }
  fetch_jars

  local port controller_port
  port="$(free_port)"
  controller_port="$(free_port)"
  while [ "$controller_port" = "$port" ]; do controller_port="$(free_port)"; done
  rm -rf "$dir/data"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
  local tool=(-Xmx128m -XX:TieredStopAtLevel=1 -cp "$lib/*")
  "$java" "${tool[@]}" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$dir/server.properties" \
    >"$dir/format.log" 2>&1 || { say "formatting $dir/data failed; see $dir/format.log"; exit 1; }
  : >"$dir/broker.log"
  launch "$port"
}

# Starts the broker of $dir/server.properties on its data as it is, and waits until it serves.
launch() {
  local port="$1"
  local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$lib/*")
  local tool=(-Xmx128m -XX:TieredStopAtLevel=1 -cp "$lib/*")
  nohup "$java" "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/broker.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  echo "$port" >"$portfile"

  # Wait until it listens, then until it can create a topic (the controller is up and the
  # broker registered with it).
  local deadline=$((SECONDS + 90))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { say "the broker exited; see $dir/broker.out and $dir/broker.log"; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { say "the broker does not listen after 90 s; see $dir/broker.log"; stop; exit 1; }
    sleep 0.5
  done
  until "$java" "${tool[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" \
    --create --if-not-exists --topic tern-ready --partitions 1 --replication-factor 1 >"$dir/ready.log" 2>&1; do
    kill -0 "$pid" 2>/dev/null || { say "the broker exited; see $dir/broker.out and $dir/broker.log"; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { say "the broker cannot create a topic after 90 s; see $dir/ready.log"; stop; exit 1; }
    sleep 1
  done
  say "running (pid $pid) on 127.0.0.1:$port, data in $dir/data, log $dir/broker.log"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pidfile"
    say "not running"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 60 ]; then
      say "pid $pid still runs after 30 s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  rm -f "$pidfile"
  say "stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart)
    # The same broker again (its data, topics and port kept): for tests of a destination that
    # goes away and comes back.
    [ -f "$dir/server.properties" ] && [ -f "$portfile" ] || { say "not started: run scripts/kafka.sh start first"; exit 1; }
    stop
    launch "$(cat "$portfile")"
    ;;
  env)
    running_pid >/dev/null || { say "not running: scripts/kafka.sh start"; exit 1; }
    echo "export TERN_TEST_KAFKA=127.0.0.1:$(cat "$portfile")"
    ;;
  status)
    if pid="$(running_pid)"; then echo "running (pid $pid) on 127.0.0.1:$(cat "$portfile")"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|restart|env|status" >&2
    exit 2
    ;;
esac
