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
WORKER = REPO / "tests" / "pipeline_worker.py"


def _prepare_unity(tmp: Path) -> dict:
  """A tiny prepared UNITY set (image records) with the stats file the pipeline needs."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from echojax.data.synthetic import unity as gen
  from tfds_builders.unity import Unity

  raw = gen.generate(tmp / "raw", num_studies=6, seed=1, images_per_study=2)
  b = Unity(data_dir=str(tmp / "data"), file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  stats = Path(b.data_dir) / "echojax_stats.json"
  if not stats.exists():
    stats.write_text(json.dumps({"mean": [30.0, 30.0, 30.0], "std": [40.0, 40.0, 40.0]}))
  return {"name": "unity", "data_dir": str(tmp / "data"), "preset": "image", "size": 32}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  return _prepare_unity(tmp_path_factory.mktemp("mp_data"))


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
  data = dict(prepared, batch_size=6)  # 8 train records -> padded to 12 rows -> 2 batches of 3 per process
  r0, r1 = run_two(tmp_path, data, "train", train=False)
  n = r0["num_examples"]
  assert n == 8
  a = [i for b in r0["batches"] for i in b]
  b = [i for bb in r1["batches"] for i in bb]
  assert set(a).isdisjoint(b)
  assert sorted(a + b) == list(range(n))  # complete, each exactly once
  assert len(r0["batches"]) == len(r1["batches"]) == 2  # same number of batches on every process
  assert r0["shapes"]["image"] == r1["shapes"]["image"] == [3, 32, 32, 3]


def test_two_processes_train_epoch_covers_split(prepared, tmp_path):
  data = dict(prepared, batch_size=4, augment={"rotation": 5})
  r0, r1 = run_two(tmp_path, data, "train", train=True)
  assert r0["steps_per_epoch"] == 2
  a = [i for b in r0["batches"] for i in b]
  b = [i for bb in r1["batches"] for i in bb]
  assert set(a).isdisjoint(b) and sorted(a + b) == list(range(8))
  assert r0["shapes"]["image"] == [2, 32, 32, 3]  # global batch 4 over 2 processes
