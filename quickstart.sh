#!/usr/bin/env bash
# echojax quickstart: install into .venv, then run the main job on the synthetic default:
# generate EchoNet-Dynamic phantoms, prepare them (TFDS array_record), train the demo config, evaluate on test,
# and print where the metrics and plots are. Needs only Python 3.11; nothing is downloaded but pip packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup_venv.sh
workdir="${1:-workdirs/quickstart_echonet_ef}"
# Training generates + prepares the synthetic set into the cache the first time (progress is shown).
.venv/bin/python -m echojax.train --config echonet_ef:demo --workdir "$workdir"
.venv/bin/python -m echojax.evaluate --workdir "$workdir" --split test --clips all --out "$workdir/eval_test" \
  | tail -n 1
echo
echo "metrics:     $workdir/eval_test/metrics.json"
echo "predictions: $workdir/eval_test/predictions.csv"
echo "plots:       $workdir/eval_test/{ef_scatter,bland_altman,training_curves}.png"
echo "logs:        $workdir/metrics.jsonl and TensorBoard events in $workdir"
