#!/usr/bin/env bash
# Anomaly scores judged as operators meet them (scripts/lib/anomaly_eval.py): every detector
# variant of benches/anomaly_nab.rs runs (fresh state per file, as NAB requires) on the NAB part
# in ../shared/nab and on the generated corpus (scripts/lib/gen_corpus.py, rebuilt from its
# seed); then the false alarms per 10,000 anomaly-free samples, the scores at each variant's own
# threshold and at the best one, the leave-one-category-out choice and the chosen variant's
# figures per category and per kind of anomaly-free series.
# Usage: scripts/eval-nab.sh [OUT_DIR] [variant@threshold,...]
set -euo pipefail
cd "$(dirname "$0")/.."
# ../shared/nab from the main checkout, ../../shared/nab from a worktree under wt/.
nab=${NAB_DIR:-}
for d in ../shared/nab ../../shared/nab; do
  [ -z "$nab" ] && [ -d "$d/data" ] && nab=$(cd "$d" && pwd)
done
[ -n "$nab" ] || { echo "NAB data not found: set NAB_DIR" >&2; exit 1; }
out=${1:-$(mktemp -d)}
rm -rf "$out"
gen=target/gen-corpus
rm -rf "$gen"
python3 scripts/lib/gen_corpus.py "$gen"
echo "-- NAB part ($nab/data)"
cargo bench --quiet --bench anomaly_nab -- "$nab/data" "$out/nab" ${2:+"$2"}
echo "-- generated corpus ($gen, seed 26)"
cargo bench --quiet --bench anomaly_nab -- "$gen/data" "$out/gen" ${2:+"$2"}
python3 scripts/lib/anomaly_eval.py "$out" "$nab" "$gen"
