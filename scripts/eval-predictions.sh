#!/usr/bin/env bash
# Every prediction-quality figure the README quotes, from a fresh clone: builds release itself,
# then prints the anomaly CV folds, the forecast table with interval coverage, and the
# time-to-breach table. Output is also written to docs/predictions-eval.txt.
# Usage: scripts/eval-predictions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
{
  echo "== anomaly scores: NAB leave-one-category-out CV (scripts/eval-nab.sh) =="
  scripts/eval-nab.sh "${TMPDIR:-/tmp}/medic-nab-cv"
  echo
  echo "== forecasts and 80 % intervals (scripts/eval-forecast.sh) =="
  scripts/eval-forecast.sh
  echo
  echo "== time to breach (benches/breach.rs) =="
  cargo bench --quiet --bench breach
} 2>&1 | tee docs/predictions-eval.txt
