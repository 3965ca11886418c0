# Shared by the benchmarks: installs, a release build, a temp dir whose processes are killed at
# exit, free ports, /proc readings, a local nginx answering 200, and the output file the docs
# quote.

# install_debian PACKAGE…: apt-get install without starting any daemon (root only).
install_debian() {
  (($# == 0)) && return 0
  if [ "$(id -u)" != 0 ]; then echo "missing: $* (apt-get install them)" >&2; exit 1; fi
  apt-get update -q
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  rm -f /usr/sbin/policy-rc.d
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# start_nginx [HOST]: sets nginx_port; one worker answering 200 "ok" to everything, no access
# log; listening on HOST (default 127.0.0.1), or on every address with HOST "*". It accepts all
# pending connections at each wake-up (one per wake-up fell behind 5,000 new connections a
# second); NGINX_KEEPALIVE (default 75s) is how long it keeps an idle connection.
start_nginx() {
  local listen="${1:-127.0.0.1}:"
  [ "${1:-}" = "*" ] && listen=""
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  keepalive_timeout ${NGINX_KEEPALIVE:-75s};
  client_body_temp_path $work/nginx;
  server { listen $listen$nginx_port backlog=4096; location / { return 200 "ok\n"; } }
}
NGINX
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
}

# bench_setup: builds medic (sets medic_bin; MEDIC_BIN=path measures that binary instead, an
# older build for a before/after), makes $work and the pids array (killed, and $work removed,
# at exit), and sets clk (clock ticks per second).
bench_setup() {
  if [ -n "${MEDIC_BIN:-}" ]; then
    medic_bin=$MEDIC_BIN
  else
    cargo build --release --quiet
    medic_bin=$PWD/target/release/medic
  fi
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
  clk=$(getconf CLK_TCK)
}

# wait_http URL: until it answers 2xx, at most 20 s.
wait_http() {
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

# machine: one line saying where a figure was measured (kernel, cores, CPU, load now).
machine() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "$(uname -srm), $(nproc) cores (${cpu:-unknown CPU}), load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_record NAME ARGS…: from here on, what the script prints also goes to docs/NAME.txt (or
# $BENCH_OUT), the output the docs quote. It starts with the command, the date, the machine and
# medic's commit, so a figure can be regenerated and compared.
bench_record() {
  local out=${BENCH_OUT:-docs/$1.txt}
  shift
  exec > >(tee "$out")
  echo "# scripts/$(basename "$0")${*:+ $*}"
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(machine); medic $(git describe --always --dirty 2>/dev/null || echo unknown)"
}
