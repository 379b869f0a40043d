"""Two real processes load one prepared split with make_loader (process 0 and 1 of 2), as two hosts would: their
shards must be disjoint and together cover the split, with equal batch counts and fixed batch shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "helpers" / "workers" / "pipeline_worker.py"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """A tiny synthetic EchoNet-Dynamic set prepared with the real builder (28x28 config), through `prepare`."""
  from echojax.data.prepare import prepare
  from echojax.data.synthetic import echonet as gen

  root = tmp_path_factory.mktemp("mp_echonet")
  raw = gen.generate(root / "raw", 14, 1)
  version = prepare("echonet_dynamic", raw, root / "data", config="28", verbose=False)
  n_train = json.loads((version / "echojax_report.json").read_text())["counts"]["train"]
  return {"name": "echonet_dynamic", "data_dir": str(root / "data"), "builder_config": "28", "frames": 4,
          "period": 2}, n_train


def run_two(tmp_path: Path, data: dict, split: str, train: bool, count: int = 2) -> list[dict]:
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  procs, outs = [], []
  for p in range(count):
    out = tmp_path / f"{split}-{train}-{p}.json"
    args = {"data": data, "split": split, "train": train, "process_index": p, "process_count": count, "out": str(out)}
    procs.append(subprocess.Popen([sys.executable, str(WORKER), json.dumps(args)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs.append(out)
  for proc in procs:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
  return [json.loads(o.read_text()) for o in outs]


def test_two_processes_eval_shards_disjoint_and_complete(prepared, tmp_path):
  data, n = prepared
  data = dict(data, batch_size=4)  # n train records, padded to whole global batches of 4 (2 rows per process)
  r0, r1 = run_two(tmp_path, data, "train", train=False)
  assert r0["num_examples"] == r1["num_examples"] == n >= 6
  a = [i for b in r0["batches"] for i in b]
  b = [i for bb in r1["batches"] for i in bb]
  assert a and b and set(a).isdisjoint(b)
  assert sorted(a + b) == list(range(n))  # complete, each exactly once
  assert len(r0["batches"]) == len(r1["batches"]) == -(-n // 4)  # same number of batches on every process
  assert r0["shapes"]["video"] == r1["shapes"]["video"] == [2, 4, 28, 28, 3]


def test_two_processes_train_epoch_covers_split(prepared, tmp_path):
  data, n = prepared
  data = dict(data, batch_size=2, augment={"rotation": 5})
  r0, r1 = run_two(tmp_path, data, "train", train=True)
  half = n // 2  # each process owns n // 2 records (drop_remainder keeps shards equal)
  assert r0["steps_per_epoch"] == n // 2
  a = [i for b in r0["batches"][:half] for i in b]
  b = [i for bb in r1["batches"][:half] for i in bb]
  assert len(a) == len(b) == half and len(set(a)) == half and len(set(b)) == half  # a permutation of the shard
  assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(2 * half))
  assert r0["shapes"]["video"] == [1, 4, 28, 28, 3]  # global batch 2 over 2 processes
