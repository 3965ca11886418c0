#!/usr/bin/env bash
# Forecast accuracy over the NAB series in ../shared/nab: MASE (mean absolute error scaled by the
# in-sample one-step naive change) of each model at 1 and 12 steps ahead, against the naive
# last-value forecast and plain least squares. Usage: scripts/eval-forecast.sh [data dir] [window s]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet --bench forecast_mase -- "$@"
