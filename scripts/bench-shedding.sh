#!/usr/bin/env bash
# A server nobody can starve: runs tests/it/shedding.rs (debug build) several times and prints
# how long medic took to answer. Each of its four scenarios holds ten times the connection cap
# open (cap 20, 200 clients that reconnect as soon as they are closed: idle keep-alive, half idle
# and half slow-loris, slow-loris, stalled TLS handshakes) and asks /metrics, /-/healthy,
# /-/ready and a webhook post, each on a new connection, 20 times; the test fails if one takes
# over 1 s. The first RUNS runs are niced (10), the BUSY runs after them share the machine with
# `yes > /dev/null` keeping one core busy. The summary gives per scenario the median of the
# answers' medians and the slowest answer over all runs.
# Usage: scripts/bench-shedding.sh [runs, default 5] [busy runs, default 5]
#        scripts/bench-shedding.sh --summarize FILE   (the summary of an earlier output)
# Output: also written to docs/web-shedding.txt (or $BENCH_OUT), headed by the date, machine and
# commit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh

summarize() { # FILE: per scenario, over the plain and busy runs (not the "harsh" ones)
  python3 - "$1" <<'PY'
import re, statistics, sys
def ms(v):
    m = re.match(r"([\d.]+)(µs|ms|s)$", v)
    x = float(m.group(1))
    return {"µs": x / 1000, "ms": x, "s": x * 1000}[m.group(2)]
names = {"[(Idle, 200)]": "idle keep-alive clients",
         "[(Idle, 100), (Slowloris, 100)]": "half idle, half slow-loris",
         "[(Slowloris, 200)]": "slow-loris clients",
         "[(Silent, 200)]": "stalled TLS handshakes"}
medians, slowest, runs, counting = {}, {}, 0, False
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("=== "):
        counting = not line.startswith("=== harsh")
        runs += counting
    m = re.match(r"^(\[.*?\]) at cap \d+: (.*?); medic held", line)
    if not (counting and m):
        continue
    for _, med, mx in re.findall(r"(/\S+|POST /\S+) median (\S+) max ([^;\s]+)", m.group(2)):
        medians.setdefault(m.group(1), []).append(ms(med))
        slowest.setdefault(m.group(1), []).append(ms(mx))
print(f"== summary over {runs} runs: each endpoint's median answer time, and the slowest answer")
for key, name in names.items():
    if key in medians:
        print(f"{name:<28} median {statistics.median(medians[key]):4.0f} ms   slowest {max(slowest[key]):4.0f} ms")
PY
}

if [ "${1:-}" = "--summarize" ]; then
  summarize "$2"
  exit 0
fi
runs=${1:-5}
busy=${2:-5}
out=${BENCH_OUT:-docs/web-shedding.txt}
bench_record web-shedding "$@"
echo "# Debug build; each line: 20 rounds of the 4 endpoints, each on a new connection, under 200 clients at a cap of 20."
cargo test --quiet --test it --no-run 2>/dev/null
one_run() { # label, nice level
  echo "=== run $1, load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n "$2" cargo test --quiet --test it shedding -- --nocapture 2>&1 | grep -E '^\[|^test result|panicked' || true
}
for i in $(seq 1 "$runs"); do one_run "$i (nice 10, no extra load)" 10; done
for i in $(seq 1 "$busy"); do
  yes > /dev/null &
  yes_pid=$!
  one_run "$i (one core loaded by yes, same priority)" 0
  kill "$yes_pid"
done
sleep 1 # tee has the lines
summarize "$out"
