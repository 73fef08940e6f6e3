#!/usr/bin/env bash
# The README's first command: set this machine up, write the demo raw zone, and run the
# pipeline end to end on the local profile through ./spark-submit.sh, then show the lake.
# Usage: ./dev/demo.sh [--stack current|spark40] [--profile P]   (defaults: current, local)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=local
stack=current
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --stack) stack="$2"; shift 2 ;;
    *) echo "usage: ./dev/demo.sh [--stack current|spark40] [--profile P]" >&2; exit 2 ;;
  esac
done
"$repo/dev/setup.sh" --stack "$stack" --profile "$profile"
export PYTHONPATH="$repo/lib:$repo/dev${PYTHONPATH:+:$PYTHONPATH}"
py="$repo/.venv/bin/python"
step() { printf '\n== %s ==\n' "$*"; }

step "demo raw zone"
"$py" -m lakeloop_dev.demo_data --profile "$profile"
step "ingest images -> bronze.images"
"$repo/spark-submit.sh" --profile "$profile" ingest_images
step "ingest tables -> bronze.digits_meta"
"$repo/spark-submit.sh" --profile "$profile" ingest_tables
step "build features -> silver.features"
"$repo/spark-submit.sh" --profile "$profile" build_features
step "train LeNet-5 with TorchDistributor (2 processes) -> models/digits_lenet"
"$repo/spark-submit.sh" --profile "$profile" train
step "score the demo images with the latest model -> gold.predictions"
"$repo/spark-submit.sh" --profile "$profile" score --input images
step "evaluate it on the test split, per scan_batch -> gold.model_evaluations"
"$repo/spark-submit.sh" --profile "$profile" evaluate
if [ "$profile" = local ]; then
  # The same jobs on a table: profile local-wine (conf/local-wine.yaml) reads the demo's wine CSV.
  step "a table as training data: ingest tables/wine.csv -> bronze.wine (local-wine)"
  "$repo/spark-submit.sh" --profile local-wine ingest_tables
  step "build features -> silver.wine_features (split; the encoding is fitted at train time)"
  "$repo/spark-submit.sh" --profile local-wine build_features
  step "train the built-in mlp with TorchDistributor -> models/wine_mlp"
  "$repo/spark-submit.sh" --profile local-wine train
  step "score every wine row -> gold.wine_predictions"
  "$repo/spark-submit.sh" --profile local-wine score
fi
step "the lake"
"$py" -m lakeloop.cli show --profile "$profile" 2>/dev/null
