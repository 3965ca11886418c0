#!/usr/bin/env bash
# medic against Prometheus' blackbox_exporter on the same machine, target and run: CPU per HTTP
# and TCP probe, probes per second, RSS; and the floor, wrk opening a fresh connection per
# request. Prints a table; asserts nothing.
# Installs (as root, from Debian) nginx-light, prometheus-blackbox-exporter and wrk if missing.
# Usage: scripts/bench.sh [seconds per phase, default 20] [checks, default 1000]
# Output: also written to docs/bench.txt (or $BENCH_OUT), headed by the date, machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
checks=${2:-1000}

source scripts/lib/bench.sh
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
install_debian "${need[@]}"
bench_setup
bench_record bench "$@"

start_nginx

results=()
# name, probes, cpu ticks, seconds, rss kB
record() { results+=("$1|$2|$3|$4|$5"); }

# medic with $checks checks of one kind at 1s, scraped every second like Prometheus does.
medic_phase() { # name, check YAML body (uses $i)
  local name=$1 body=$2 port
  port=$(free_port)
  {
    echo "defaults: {interval: 1s, timeout: 900ms}"
    echo "checks:"
    for i in $(seq 1 "$checks"); do eval "echo \"  - {name: c$i, $body}\""; done
  } > "$work/$name.yml"
  "$medic_bin" --config.file "$work/$name.yml" --web.listen-address "127.0.0.1:$port" \
    --state.url "sqlite://$work/$name.db" --log.level warn & local pid=$!; pids+=($pid)
  wait_http "http://127.0.0.1:$port/-/ready"
  sleep 3
  local runs0 runs1 c0 c1 t0 t1
  runs_total() { curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^medic_check_runs_total/ {s += $2} END {printf "%d\n", s}'; }
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid"); runs0=$(runs_total)
  local end=$(( $(date +%s) + duration ))
  while [ "$(date +%s)" -lt "$end" ]; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); runs1=$(runs_total)
  record "$name" "$((runs1 - runs0))" "$(echo "$c1 - $c0" | bc)" "$(echo "$t1 - $t0" | bc)" "$(rss_kb "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# blackbox_exporter doing probes through /probe, driven by wrk at a rate close to medic's.
blackbox_phase() { # name, module, target
  local name=$1 module=$2 target=$3 port
  port=$(free_port)
  cat > "$work/blackbox.yml" <<BB
modules:
  http_2xx: {prober: http, timeout: 900ms, http: {preferred_ip_protocol: ip4}}
  tcp_connect: {prober: tcp, timeout: 900ms, tcp: {preferred_ip_protocol: ip4}}
BB
  prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=warn & local pid=$!; pids+=($pid)
  wait_http "http://127.0.0.1:$port/-/healthy"
  local c0 c1 t0 t1 out requests
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  # Two connections keep about a thousand probes a second in flight on this machine.
  out=$(wrk -t1 -c2 -d"${duration}s" "http://127.0.0.1:$port/probe?module=$module&target=$target")
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  record "$name" "$requests" "$(echo "$c1 - $c0" | bc)" "$(echo "$t1 - $t0" | bc)" "$(rss_kb "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# The floor: a C client (wrk) opening a fresh connection per request to the same nginx, its
# own CPU (user and system, from getrusage) per request.
wrk_phase() {
  local out
  out=$(python3 - "$duration" "http://127.0.0.1:$nginx_port/c/1" "$clk" <<'PY'
import resource, subprocess, sys
duration, url, clk = sys.argv[1], sys.argv[2], float(sys.argv[3])
run = subprocess.run(["wrk", "-t1", "-c2", f"-d{duration}s", "-H", "Connection: close", url],
                     capture_output=True, text=True, check=True)
requests = next(line.split()[0] for line in run.stdout.splitlines() if "requests in" in line)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(requests, (usage.ru_utime + usage.ru_stime) * clk, usage.ru_maxrss)
PY
)
  read -r requests ticks rss <<< "$out"
  record wrk_fresh_connection "$requests" "$ticks" "$duration" "$rss"
}

echo "medic $(git describe --always --dirty 2>/dev/null || echo unknown) vs blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | awk 'NR==1 {print $3}'), $(nproc) cores, ${duration}s per phase, $checks checks"
medic_phase medic_http "http: {url: 'http://127.0.0.1:$nginx_port/c/\$i'}"
medic_phase medic_http_keepalive "http: {url: 'http://127.0.0.1:$nginx_port/c/\$i', keep_alive: true}"
medic_phase medic_tcp "tcp: {address: '127.0.0.1:$nginx_port'}"
blackbox_phase blackbox_http http_2xx "http://127.0.0.1:$nginx_port/"
blackbox_phase blackbox_tcp tcp_connect "127.0.0.1:$nginx_port"
wrk_phase

python3 - "$clk" "${results[@]}" <<'PY'
import sys
clk = float(sys.argv[1])
rows = {}
print(f"{'run':<22} {'probes/s':>9} {'CPU ms/probe':>13} {'RSS MB':>7}")
for r in sys.argv[2:]:
    name, probes, ticks, secs, rss = r.split("|")
    probes, ticks, secs, rss = float(probes), float(ticks), float(secs), float(rss)
    ms = ticks * 1000 / clk / max(probes, 1)
    rows[name] = ms
    print(f"{name:<22} {probes / secs:9.0f} {ms:13.3f} {rss / 1024:7.1f}")
for kind in ("http", "tcp"):
    m, b = rows.get(f"medic_{kind}"), rows.get(f"blackbox_{kind}")
    if m and b:
        print(f"CPU per {kind.upper()} probe, medic / blackbox_exporter: {m / b:.2f}x")
if rows.get("medic_http") and rows.get("wrk_fresh_connection"):
    print(f"CPU per HTTP probe, medic / wrk (a fresh connection per request): "
          f"{rows['medic_http'] / rows['wrk_fresh_connection']:.2f}x")
PY
