#!/usr/bin/env bash
# The status page at scale: medic with N checks (default 10,000), `GET /` fetched several times;
# prints each answer's size, wall time and the CPU medic spent on it. Asserts nothing.
# Usage: scripts/bench-page.sh [checks, default 10000] [fetches, default 10]
# Output: also written to docs/bench-page.txt (or $BENCH_OUT), headed by the date, machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
checks=${1:-10000}
fetches=${2:-10}
source scripts/lib/bench.sh
bench_setup
bench_record bench-page "$@"
port=$(free_port)
{
  echo "checks:"
  # Half probe a closed port (critical), half medic itself: failing checks come first.
  for i in $(seq 1 "$checks"); do
    if ((i % 2)); then
      echo "  - {name: bulk$i, interval: 10s, tcp: {address: '127.0.0.1:1'}}"
    else
      echo "  - {name: bulk$i, interval: 10s, http: {url: 'http://127.0.0.1:$port/-/healthy'}}"
    fi
  done
} > "$work/page.yml"
"$medic_bin" --config.file "$work/page.yml" --web.listen-address "127.0.0.1:$port" \
  --state.url "sqlite://$work/page.db" --log.level error & pids+=($!)
pid=${pids[-1]}
wait_http "http://127.0.0.1:$port/-/ready"
# One round of probes, so the strips and sparklines have data.
sleep 12
echo "== GET / with $checks checks, $fetches fetches"
for _ in $(seq 1 "$fetches"); do
  before=$(cpu_ticks "$pid")
  line=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  read -r size wall <<<"$line"
  # CPU ticks are 1/CLK_TCK s: a coarse figure, summed over the fetches below.
  echo "$size bytes  wall $(awk -v w="$wall" 'BEGIN{printf "%.1f", w*1000}') ms  cpu $(( (after - before) * 1000 / clk )) ms"
done
before=$(cpu_ticks "$pid")
for _ in $(seq 1 "$fetches"); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
after=$(cpu_ticks "$pid")
echo "mean CPU per render over $fetches more: $(( (after - before) * 1000 / clk / fetches )) ms"
echo "== GET /?status=critical&page=2, /checks/bulk1"
curl -s -o /dev/null -w '%{size_download} bytes  wall %{time_total} s\n' "http://127.0.0.1:$port/?status=critical&page=2"
curl -s -o /dev/null -w '%{size_download} bytes  wall %{time_total} s\n' "http://127.0.0.1:$port/checks/bulk1"
