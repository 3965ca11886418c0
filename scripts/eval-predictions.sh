#!/usr/bin/env bash
# Every prediction-quality figure docs/predictions.md quotes, from a fresh clone: builds release
# itself, then prints the anomaly evaluation (NAB leave-one-category-out, the generated corpus,
# every figure at the bundled rule's threshold, false alarms per 10,000 anomaly-free samples,
# the live spike cases), the forecast table with interval coverage, and the time-to-breach
# distribution beside predict_linear (on the family's own 20 instances per shape, on 100 more
# from unseen seeds, and on probe shapes). Output is also written to docs/predictions-eval.txt.
# Usage: scripts/eval-predictions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
{
  echo "scripts/eval-predictions.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
  echo
  echo "== anomaly scores (scripts/eval-nab.sh) =="
  scripts/eval-nab.sh "${TMPDIR:-/tmp}/medic-anomaly-eval"
  echo
  echo "== forecasts and 80 % intervals (scripts/eval-forecast.sh) =="
  scripts/eval-forecast.sh
  echo
  echo "== time to breach (benches/breach.rs) =="
  cargo bench --quiet --bench breach
  echo
  echo "-- the same shapes, 100 instances each from seeds no change was judged on"
  MEDIC_BREACH_FIRST=500 MEDIC_BREACH_INSTANCES=100 cargo bench --quiet --bench breach
  echo
  echo "-- probes: shapes no change was judged on, 40 instances each"
  MEDIC_BREACH_PROBES=1 MEDIC_BREACH_INSTANCES=40 cargo bench --quiet --bench breach
} 2>&1 | tee docs/predictions-eval.txt
