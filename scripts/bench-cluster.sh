#!/usr/bin/env bash
# Three medic replicas (--cluster.shard auto) on one PostgreSQL, N HTTP checks at 60 s against a
# local nginx: probes per second per replica (and whether every due probe was done), CPU and
# RSS per replica, PostgreSQL rows written per second, scrape time per replica; every check's
# longest gap between two probes; then kill -9 of one replica: how long until the others own
# its checks, and the longest any check then went without a probe; then its restart and the
# rebalance. Prints figures; asserts nothing. Output is also written to docs/bench-cluster.txt.
# Installs (as root, from Debian) nginx-light and postgresql if missing.
# Usage: scripts/bench-cluster.sh [checks, default 300000] [steady seconds, default 150]
set -euo pipefail
cd "$(dirname "$0")/.."
checks=${1:-300000}
steady=${2:-150}
interval=60

source scripts/lib/bench.sh
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
install_debian "${need[@]}"
bench_setup
# The checks open a fresh connection per probe: nginx need not keep them once it answered.
NGINX_KEEPALIVE=0 start_nginx

# A throwaway PostgreSQL on a free port (as the postgres user when root: it refuses root).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_port=$(free_port)
mkdir -p "$work/pg" && chmod 700 "$work/pg"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg/data" -U medic --auth=trust -E UTF8 --no-sync >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 60 start \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c shared_buffers=256MB -c max_connections=100" >/dev/null
trap 'as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
pg_url="postgres://medic@127.0.0.1:$pg_port/postgres"
psql_q() { psql -X -A -t -q -h 127.0.0.1 -p "$pg_port" -U medic postgres -c "$1"; }

python3 - "$checks" "$nginx_port" "$interval" > "$work/medic.yml" <<'PY'
import sys
n, port, interval = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = [f"defaults: {{interval: {interval}s, timeout: 5s}}", "checks:"]
out += [f"  - {{name: c{i}, http: {{url: 'http://127.0.0.1:{port}/c/{i}'}}}}" for i in range(n)]
print("\n".join(out))
PY

ports=() mpids=()
start_replica() { # index
  local i=$1
  [ -n "${ports[$i]:-}" ] || ports[$i]=$(free_port)
  "$medic_bin" --config.file "$work/medic.yml" --web.listen-address "127.0.0.1:${ports[$i]}" \
    --state.url "$pg_url" --cluster.shard auto --cluster.location "zone-$i" --log.level warn \
    2>>"$work/medic-$i.log" & mpids[$i]=$!; pids+=(${mpids[$i]})
}
metric() { # port, series prefix: the sum of its samples
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {printf "%d\n", s}'
}
# How many checks replica $1 owns now: from /api/v1/cluster, a few hundred bytes where /metrics
# is over 100 MB at 100,000 checks (reading it took longer than the handover it timed).
owned() {
  curl -fsS "http://127.0.0.1:${ports[$1]}/api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks_owned"])'
}
members() {
  curl -fsS "http://127.0.0.1:${ports[$1]}/api/v1/cluster" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["members"]))'
}
now_ms() { date +%s%3N; }
# The longest gap between two probes of any check, in [from, to] ms, and how many checks went
# longer than the interval plus 10 s without one.
gaps() {
  psql_q "SELECT ROUND(COALESCE(MAX(gap), 0) / 1000.0, 1), COUNT(*) FILTER (WHERE gap > ($interval + 10) * 1000) FROM (
            SELECT at_ms - LAG(at_ms) OVER (PARTITION BY check_name ORDER BY at_ms) AS gap
            FROM check_results WHERE at_ms BETWEEN $1 AND $2) g" | tr '|' ' '
}
# Checks with no probe in [from, to] ms.
unprobed() {
  psql_q "SELECT $checks - COUNT(DISTINCT check_name) FROM check_results WHERE at_ms BETWEEN $1 AND $2"
}
rows_written() { psql_q "SELECT SUM(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"; }

bench_record bench-cluster "$@"
echo "3 replicas, PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'), $checks HTTP checks at ${interval}s against nginx"
started=$(date +%s.%N)
for i in 0 1 2; do start_replica $i; done
for i in 0 1 2; do wait_http "http://127.0.0.1:${ports[$i]}/-/ready"; done
until [ "$(( $(owned 0) + $(owned 1) + $(owned 2) ))" -eq "$checks" ] && [ "$(members 0)" = 3 ]; do sleep 1; done
printf "all three ready and the checks split in %.1f s: %s / %s / %s\n" "$(echo "$(date +%s.%N) - $started" | bc)" "$(owned 0)" "$(owned 1)" "$(owned 2)"
# A whole interval for every check to reach its slot, then the steady state is measured.
sleep $((interval + 10))

declare -A c0 r0 scrape
t0=$(date +%s.%N); t0ms=$(now_ms); w0=$(rows_written)
for i in 0 1 2; do c0[$i]=$(cpu_ticks "${mpids[$i]}"); r0[$i]=$(metric "${ports[$i]}" medic_check_runs_total); scrape[$i]=0; done
end=$(( $(date +%s) + steady ))
while [ "$(date +%s)" -lt "$end" ]; do
  for i in 0 1 2; do
    s=$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:${ports[$i]}/metrics")
    scrape[$i]=$(echo "if ($s > ${scrape[$i]}) $s else ${scrape[$i]}" | bc)
  done
  sleep 15
done
t1=$(date +%s.%N); t1ms=$(now_ms); w1=$(rows_written)
secs=$(echo "$t1 - $t0" | bc)
total_cpu=0
printf "%-9s %8s %9s %9s %7s %7s %9s\n" replica owned "probes/s" "due/s" cores "RSS MB" "scrape s"
for i in 0 1 2; do
  c1=$(cpu_ticks "${mpids[$i]}"); r1=$(metric "${ports[$i]}" medic_check_runs_total); o=$(owned $i)
  cores=$(echo "scale=3; ($c1 - ${c0[$i]}) / $clk / $secs" | bc)
  total_cpu=$(echo "$total_cpu + $cores" | bc)
  printf "%-9s %8d %9.1f %9.1f %7.3f %7.1f %9.3f\n" "zone-$i" "$o" "$(echo "($r1 - ${r0[$i]}) / $secs" | bc -l)" \
    "$(echo "$o / $interval" | bc -l)" "$cores" "$(echo "$(rss_kb "${mpids[$i]}") / 1024" | bc -l)" "${scrape[$i]}"
done
printf "three together: %.3f cores; PostgreSQL rows written: %.0f/s\n" "$total_cpu" "$(echo "($w1 - $w0) / $secs" | bc -l)"
read -r gap over <<<"$(gaps "$t0ms" "$t1ms")"
echo "steady ${secs%.*} s: longest gap between two probes of a check ${gap} s; checks over ${interval}+10 s: $over; checks unprobed in the last ${interval} s: $(unprobed $((t1ms - interval * 1000)) "$t1ms")"

# kill -9 of one replica: the others own its checks once they see it gone.
victim=2
before=$(owned $victim)
kill -9 "${mpids[$victim]}"; wait "${mpids[$victim]}" 2>/dev/null || true
killed=$(date +%s.%N); killed_ms=$(now_ms)
until [ "$(( $(owned 0) + $(owned 1) ))" -eq "$checks" ]; do sleep 0.2; done
took=$(echo "$(date +%s.%N) - $killed" | bc)
printf "kill -9 of zone-%d (%d checks): the others own them after %.1f s\n" "$victim" "$before" "$took"
sleep $((interval + 15))
after_ms=$(now_ms)
read -r gap over <<<"$(gaps $((killed_ms - interval * 1000)) "$after_ms")"
echo "across the handover: longest gap between two probes of a check ${gap} s (interval ${interval} s); checks over ${interval}+10 s: $over; checks unprobed in the ${interval} s after the handover: $(unprobed $((after_ms - interval * 1000)) "$after_ms")"

# Its restart: it takes about a third back.
restarted=$(date +%s.%N); restarted_ms=$(now_ms)
start_replica $victim
wait_http "http://127.0.0.1:${ports[$victim]}/-/ready"
until [ "$(owned $victim)" -gt 0 ] && [ "$(( $(owned 0) + $(owned 1) + $(owned $victim) ))" -eq "$checks" ]; do sleep 0.2; done
printf "restart of zone-%d: ready and rebalanced after %.1f s: %s / %s / %s\n" "$victim" "$(echo "$(date +%s.%N) - $restarted" | bc)" "$(owned 0)" "$(owned 1)" "$(owned $victim)"
sleep $((interval + 15))
end_ms=$(now_ms)
read -r gap over <<<"$(gaps $((restarted_ms - interval * 1000)) "$end_ms")"
echo "across the rebalance: longest gap ${gap} s; checks over ${interval}+10 s: $over; unprobed in the last ${interval} s: $(unprobed $((end_ms - interval * 1000)) "$end_ms")"
for i in 0 1 2; do
  printf "zone-%d: %s handovers, RSS %.0f MB\n" "$i" "$(metric "${ports[$i]}" medic_cluster_handovers_total)" "$(echo "$(rss_kb "${mpids[$i]}") / 1024" | bc -l)"
done
sleep 1 # tee has the lines
