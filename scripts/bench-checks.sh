#!/usr/bin/env bash
# Check-engine benchmark: medic probing a local nginx. Prints figures; asserts nothing.
#   1. 1,000 HTTP checks at 1s: probes/s, CPU ms per probe, RSS (with a /metrics scrape every second).
#   2. 10,000 HTTP checks at 10s: CPU share of one core, RSS, /metrics render time and size.
# Usage: scripts/bench-checks.sh [seconds per phase, default 30] [warm-up seconds]
# Output: also written to docs/bench-checks.txt (or $BENCH_OUT), headed by the date, machine and commit.
#   The warm-up defaults to one interval and 2 s. RSS in steady state needs about 1,100 s: each
#   check's result ring takes its last room after the history (20 probes, 200 s at 10 s) and the
#   store's caches fill over the first quarter hour (`scripts/bench-checks.sh 60 1100`).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30}
warmup=${2:-}

source scripts/lib/bench.sh
command -v nginx >/dev/null 2>&1 || install_debian nginx-light
bench_setup
bench_record bench-checks "$@"
start_nginx
runs_total() { curl -fsS "http://$1/metrics" | awk '/^medic_check_runs_total/ {s += $2} END {printf "%d\n", s}'; }

gen_config() { # count interval
  {
    echo "defaults: {interval: $2, timeout: 5s}"
    echo "checks:"
    for i in $(seq 1 "$1"); do
      echo "  - {name: c$i, http: {url: 'http://127.0.0.1:$nginx_port/c/$i'}}"
    done
  } > "$work/medic-$1.yml"
}

run_phase() { # count interval
  local count=$1 interval=$2 port
  port=$(free_port)
  gen_config "$count" "$interval"
  "$medic_bin" --config.file "$work/medic-$count.yml" --web.listen-address "127.0.0.1:$port" \
    --state.url "sqlite://$work/medic-$count.db" --log.level warn &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  # Warm up: every check has been scheduled once (or longer, when asked). Scraped every second
  # meanwhile, as Prometheus would.
  local warm_end=$(( $(date +%s) + ${warmup:-$(( ${interval%s} + 2 ))} ))
  while [ "$(date +%s)" -lt "$warm_end" ]; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" || true; sleep 1; done
  local t0 c0 r0 t1 c1 r1
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid"); r0=$(runs_total "127.0.0.1:$port")
  local end=$(( $(date +%s) + duration ))
  while [ "$(date +%s)" -lt "$end" ]; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); r1=$(runs_total "127.0.0.1:$port")
  local rss; rss=$(rss_kb "$pid")
  local render size
  render=$(for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"; done | sort -n | sed -n 3p)
  size=$(curl -fsS "http://127.0.0.1:$port/metrics" | wc -c)
  python3 - "$count" "$interval" "$t0" "$t1" "$c0" "$c1" "$r0" "$r1" "$clk" "$rss" "$render" "$size" <<'PY'
import sys
count, interval = sys.argv[1], sys.argv[2]
t0, t1, c0, c1, r0, r1, clk, rss, render, size = map(float, sys.argv[3:])
secs = t1 - t0
probes = r1 - r0
cpu_ms = (c1 - c0) * 1000.0 / clk
print(f"{count:>6} checks @ {interval:<4} probes/s {probes/secs:8.1f}   CPU ms/probe {cpu_ms/max(probes,1):6.3f}   "
      f"CPU {100*cpu_ms/1000/secs:5.1f}% of a core   RSS {rss/1024:6.1f} MB   /metrics {render*1000:6.1f} ms, {size/1e6:5.2f} MB")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "medic $(git describe --always --dirty 2>/dev/null || echo unknown), $(nproc) cores, ${duration}s per phase after ${warmup:-interval + 2}s warm-up, target nginx on 127.0.0.1:$nginx_port"
run_phase 1000 1s
run_phase 10000 10s
