#!/usr/bin/env bash
# Does RL learn in the default experiment? Zero-shot pass@1, a short run per variant, pass@1 after, reward curve.
#
#   scripts/learning_check.sh [CONFIG] [DATASET] [OUT] [VARIANT...]
#   scripts/learning_check.sh config/config.yaml gsm8k /tmp/learning_check grpo ppo
#
# Uses the pipeline's own CLIs (mpo.model_prep, mpo.data.prepare, mpo.train, mpo.evaluate), one torch thread per
# process; variants run side by side. The base model is prepared once into OUT/model (reused if present).
# Results: OUT/eval/<variant>/summary.json (pass@1), OUT/runs/<variant>/metrics.jsonl (per-step reward),
# and the table printed at the end. docs/default_experiment.md records what it measured.
set -euo pipefail
CONFIG=${1:-config/config.yaml}; DATASET=${2:-gsm8k}; OUT=${3:-/tmp/learning_check}; shift $(( $# < 3 ? $# : 3 ))
VARIANTS=("${@:-grpo}")
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PYTHON:-python}
MODEL=$($PY -c "import sys; from mpo.config import load_config; print(next(iter(load_config(sys.argv[1])['models'])))" "$CONFIG")
[ -f "$OUT/model/config.json" ] || $PY -m mpo.model_prep --config "$CONFIG" --model "$MODEL" --out "$OUT/model" --threads 1
$PY -m mpo.data.prepare --config "$CONFIG" --dataset "$DATASET" --outdir "$OUT/data/$DATASET"
evaluate() {  # evaluate MODEL_DIR LABEL
  $PY -m mpo.evaluate --config "$CONFIG" --model-dir "$1" --dataset "$DATASET" --data-root "$OUT/data" \
      --out "$OUT/eval/$2" --model "$MODEL" --variant "$2" --threads 1
}
run() {  # train one variant, then evaluate its policy
  /usr/bin/time -f "$1: %e s wall, %U s user" $PY -m mpo.train --config "$CONFIG" --model "$MODEL" --dataset "$DATASET" \
      --variant "$1" --base "$OUT/model" --data-root "$OUT/data" --out "$OUT/runs/$1" --threads 1
  evaluate "$OUT/runs/$1/policy" "$1"
}
evaluate "$OUT/model" zero_shot > "$OUT/zero_shot.log" 2>&1 &
for v in "${VARIANTS[@]}"; do run "$v" > "$OUT/$v.log" 2>&1 & done
wait
$PY - "$OUT" zero_shot "${VARIANTS[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for label in sys.argv[2:]:
    s = json.loads((out / "eval" / label / "summary.json").read_text())
    line = f"{label:10s} pass@1 {s['pass@1']:.3f} (+/- {s['pass@1_stderr']:.3f}, {s['n_problems']} problems)"
    metrics = out / "runs" / label / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(x) for x in metrics.read_text().splitlines()]
        line += "  reward/step: " + " ".join(f"{r['reward']:.2f}" for r in rows)
        line += f"  median {sorted(r['time_step'] for r in rows)[len(rows) // 2]:.0f} s/step"
    print(line)
PYEOF
