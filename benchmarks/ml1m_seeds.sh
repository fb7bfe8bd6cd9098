#!/usr/bin/env bash
# Train recipes/ml1m.yaml with several seeds (each draws its own split) and report test
# metrics and wall time per seed. Usage: bash benchmarks/ml1m_seeds.sh [SEEDS...] (default 0 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
export BINDIFF_DATA_DIR="${BINDIFF_DATA_DIR:-../shared/data}"
root="${BINDIFF_RUNS:-runs/seeds}"
for seed in "${@:-0 1 2}"; do
  for s in $seed; do
    start=$(date +%s)
    .venv/bin/bindiff train recipes/ml1m.yaml seed="$s" output.root="$root" output.progress=false > /dev/null
    end=$(date +%s)
    run=$(ls -td "$root"/ml1m/*/ | head -1)
    .venv/bin/python -c "import json,sys; m=json.load(open('$run/metrics.json')); print(f\"seed $s: {m['test']} best_epoch={m['training']['best_epoch']} wall={$end-$start}s run=$run\")"
  done
done
echo "command: BINDIFF_DATA_DIR=$BINDIFF_DATA_DIR BINDIFF_RUNS=$root bash benchmarks/ml1m_seeds.sh $*"
