#!/usr/bin/env bash
# F16 twins of committed low-resource cells of the `cpu` preset: the cell's training run again into
# scratch folders (its Q8_0 export's sha256 printed, to set beside the committed log's), the same
# checkpoint exported as F16, scored on the cell's test sample into results/export-twins/, and
# compared with the committed Q8_0 run into reports/export-twins/<set>-p<share>-s<seed>-<init>.md.
# It sizes what the export type alone does to a cell's score.
# Usage: benchmarks/export-twins.sh SET SHARE SEED [SET SHARE SEED …]   (from the repository root,
#   after cargo build --release; RNER_DATA set; base cells: the student is fetched if missing)
#   e.g. benchmarks/export-twins.sh crossner_ai 0.1 1 crossner_ai 0.25 1 crossner_ai 0.5 1
set -euo pipefail
bin=${RNER_BIN:-./target/release/rner}
scratch=$(mktemp -d)
while [ $# -ge 3 ]; do
  set_=$1 share=$2 seed=$3
  shift 3
  pct=$(awk -v f="$share" 'BEGIN {printf "%g", f * 100}')
  name="cpu-lr-${set_}-p${pct}-s${seed}-base"
  "$bin" -q --results results/export-twins --models "$scratch/models" sft --model smollm2-135m-instruct \
    --train-set "$set_" --fraction "$share" --target direct --name "$name" --seed "$seed" --epochs 2 --batch 8 \
    --lr 0.0001 --save-every 20 --keep 1 --checkpoints "$scratch/ck" --export q8-0
  echo "twin's Q8_0 export: $(sha256sum "$scratch/models/$name.gguf" | cut -d' ' -f1)"
  echo "committed export:   $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['export_sha256'])" "results/train/$name/run.json")"
  "$bin" -q export "$scratch/ck/$name" --type f16 --out "$scratch/models/$name-f16.gguf"
  "$bin" -q --results results/export-twins eval --model "$scratch/models/$name-f16.gguf" --datasets "$set_" \
    --split test --limit 200 --seed 42 --parallel 16
  run_name=${name//_/-}
  a=$(ls -d results/${run_name}-direct-free-test-n200-s42-* | head -1)
  b=$(ls -d results/export-twins/${run_name}-f16-direct-free-test-n200-s42-* | head -1)
  mkdir -p reports/export-twins
  "$bin" -q compare "$a" "$b" --out "reports/export-twins/${set_}-p${pct}-s${seed}-base.md"
done
rm -rf "$scratch"
