#!/usr/bin/env bash
# Discovered targets at scale: 10,000 targets from one file_sd file become 10,000 HTTP checks
# (a local nginx answers them all). Prints when medic is ready, when every target is a check,
# when the first and the last have been probed, RSS, and /metrics render time and size.
# Asserts nothing. Usage: scripts/bench-discovery.sh [targets, default 10000] [interval, 5s]
# Output: also written to docs/bench-discovery.txt (or $BENCH_OUT), headed by the date, machine
# and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
interval=${2:-5s}

source scripts/lib/bench.sh
command -v nginx >/dev/null 2>&1 || install_debian nginx-light
bench_setup
bench_record bench-discovery "$@"

# nginx on every loopback address (127.0.0.0/8): each target is an address of its own.
start_nginx "*"

python3 - "$count" "$nginx_port" > "$work/targets.json" <<'PY'
import json, sys
n, port = int(sys.argv[1]), sys.argv[2]
targets = [f"127.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}:{port}" for i in range(n)]
print(json.dumps([{"targets": targets, "labels": {"env": "bench", "team": "load"}}]))
PY
cat > "$work/medic.yml" <<YAML
check_templates:
  - name: fleet
    file_sd: ["$work/targets.json"]
    interval: $interval
    timeout: 2s
    http: {url: "http://{{ target }}/health"}
YAML

port=$(free_port)
api="http://127.0.0.1:$port"
t0=$(date +%s.%N)
"$medic_bin" --config.file "$work/medic.yml" --web.listen-address "127.0.0.1:$port" \
  --state.url "sqlite://$work/medic.db" --log.level warn &
pid=$!
pids+=($pid)
elapsed() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$t0"; }
summary() { curl -sS "$api/api/v1/health" | python3 -c 'import json, sys; s = json.load(sys.stdin)["summary"]; print(sum(s.values()), s.get("unknown", 0))' 2>/dev/null; }

until curl -fsS -o /dev/null "$api/-/ready" 2>/dev/null; do sleep 0.05; done
ready=$(elapsed)
listed="" first="" probed=""
for _ in $(seq 1 600); do
  read -r total unknown < <(summary || echo "0 0")
  [ -z "$listed" ] && [ "$total" -ge "$count" ] && listed=$(elapsed)
  [ -z "$first" ] && [ "$total" -gt 0 ] && [ "$unknown" -lt "$total" ] && first=$(elapsed)
  if [ -n "$listed" ] && [ "$unknown" = 0 ]; then probed=$(elapsed); break; fi
  sleep 0.2
done
# One interval more, scraped every second as Prometheus would, then the readings.
for _ in $(seq 1 "${interval%s}"); do curl -fsS -o /dev/null "$api/metrics"; sleep 1; done
rss=$(rss_kb "$pid")
render=$(for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -w '%{time_total}\n' "$api/metrics"; done | sort -n | sed -n 3p)
size=$(curl -fsS "$api/metrics" | wc -c)
labels=$(curl -fsS "$api/metrics" | grep -c '^medic_check_labels{' || true)

echo "$(nproc) cores, release build"
echo "$count targets from one file_sd file, HTTP checks at $interval against a local nginx:"
echo "  ready ${ready}s, every target a check ${listed:-never}s, first probed ${first:-never}s, every check probed ${probed:-never}s (after start)"
python3 -c "import sys; r, t, s, l = map(float, sys.argv[1:]); print(f'  RSS {r/1024:.1f} MiB; /metrics {t*1000:.0f} ms (median of 5), {s/1e6:.2f} MB, {l:.0f} medic_check_labels series')" \
  "$rss" "$render" "$size" "$labels"
kill "$pid"; wait "$pid" 2>/dev/null || true
