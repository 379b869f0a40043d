"""Cross-validation (echojax.cv) and what it is built from: split files, transfer init, L1, the permutation test,
patient folds; end to end on the smoke LVAD cohort (slow)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from echojax import cv
from echojax.checkpoint import merge_init
from echojax.data.pipeline import build_loader
from echojax.data.sources import SubsetSource, read_split_file, write_split_file
from echojax.errors import UserError
from echojax.metrics import auroc, permutation_test_auroc
from echojax.optim import add_l1

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_split_file_subsets_a_source_in_order(tmp_path):
  records = [{"video": np.full((4, 8, 8, 3), i, np.uint8), "num_frames": np.int32(4), "label": np.int32(i % 2),
              "file_name": f"f{i}"} for i in range(10)]
  path = write_split_file(tmp_path / "s.json", {"a": ("train", [7, 2, 5]), "b": ("train", [0])}, note="x")
  splits = read_split_file(path)
  assert splits["a"] == {"of": "train", "indices": [7, 2, 5]}
  sub = SubsetSource(records, splits["a"]["indices"], "s.json:a")
  assert len(sub) == 3 and sub[1]["file_name"] == "f2"
  loader = build_loader(sub, (np.zeros(1), np.ones(1)), {"frames": 2, "period": 1, "batch_size": 4}, "a",
                        train=False, seed=0, process_index=0, process_count=1)
  batch = next(iter(loader))
  assert batch["valid"].tolist() == [True, True, True, False]
  assert batch["video"][:3, 0, 0, 0, 0].tolist() == [7.0, 2.0, 5.0]  # the subset's records, in its order
  assert list(loader.targets(["file_name"])["file_name"]) == ["f7", "f2", "f5"]
  with pytest.raises(UserError, match="outside the 10 records"):
    SubsetSource(records, [3, 10], "s.json:a")


def test_split_file_errors_name_the_file_and_field(tmp_path):
  with pytest.raises(UserError, match="data.split_file.*does not exist"):
    read_split_file(tmp_path / "none.json")
  bad = tmp_path / "bad.json"
  bad.write_text('{"splits": {"a": {"indices": [1]}}}')
  with pytest.raises(UserError, match="split 'a' needs"):
    read_split_file(bad)
  bad.write_text("not json")
  with pytest.raises(UserError, match="is not a split file"):
    read_split_file(bad)


def test_merge_init_loads_all_but_reinit_and_names_what_is_missing():
  fresh = {"params": {"backbone": {"kernel": np.zeros((2, 2))}, "fc0": {"kernel": np.zeros((4, 3))},
                      "head": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)}},
           "batch_stats": {"backbone": {"mean": np.zeros(2)}}}
  loaded = {"params": {"backbone": {"kernel": np.ones((2, 2))}, "head": {"kernel": np.ones((4, 2)),
                                                                         "bias": np.ones(2)}},
            "batch_stats": {"backbone": {"mean": np.full(2, 5.0)}}}
  merged, counts = merge_init(fresh, loaded, r"^(fc\d+|head)/", "ef_run")
  assert merged["params"]["backbone"]["kernel"].tolist() == [[1, 1], [1, 1]]  # transferred
  assert merged["batch_stats"]["backbone"]["mean"].tolist() == [5, 5]
  assert not merged["params"]["head"]["kernel"].any() and not merged["params"]["fc0"]["kernel"].any()  # fresh
  assert counts == {"loaded": 2, "reinit": 3, "unused": 0}
  with pytest.raises(UserError, match="has no params tensor 'fc0/kernel'.*init.reinit"):
    merge_init(fresh, loaded, r"^head/", "ef_run")
  loaded["params"]["backbone"]["kernel"] = np.ones((3, 2))
  with pytest.raises(UserError, match="'backbone/kernel' is \\(3, 2\\) there and \\(2, 2\\)"):
    merge_init(fresh, loaded, r"^(fc\d+|head)/", "ef_run")


def test_l1_adds_the_sign_of_selected_kernels_only():
  params = {"backbone": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([3.0])},
            "fc0": {"kernel": jnp.array([[-1.0, 0.0, 2.0]]), "bias": jnp.array([-1.0])}}
  grads = jax.tree_util.tree_map(jnp.zeros_like, params)
  tx = add_l1(0.1, r"^fc\d+/")
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["fc0"]["kernel"], [[-0.1, 0.0, 0.1]], rtol=1e-6)
  assert not upd["fc0"]["bias"].any() and not upd["backbone"]["kernel"].any()  # biases and other kernels: none
  # SGD on the L1 term alone shrinks |w|; frozen leaves (optax MaskedNode) are left alone
  from echojax.models import summary
  frozen = summary.freeze(optax.chain(add_l1(0.1), optax.sgd(1.0)), summary.trainable_mask(params, r"^fc0/"))
  upd, _ = frozen.update(grads, frozen.init(params), params)
  np.testing.assert_allclose(upd["fc0"]["kernel"], [[0.1, 0.0, -0.1]], rtol=1e-6)
  assert not upd["backbone"]["kernel"].any()


def test_permutation_test_of_auroc():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 40)
  s = np.round(y + rng.normal(0, 0.7, 40), 1)  # rounded: ties, which count one half
  out = permutation_test_auroc(y, s, permutations=4000, seed=1)
  assert out["auroc"] == pytest.approx(auroc(y, s))
  assert out["p_value"] < 0.01 and abs(out["null_mean"] - 0.5) < 0.02
  null = permutation_test_auroc(y, rng.random(40), permutations=4000, seed=1)
  assert null["p_value"] > 0.01
  assert np.isnan(permutation_test_auroc(np.ones(5), np.arange(5.0))["p_value"])


def test_patient_folds_are_stratified_and_cover_every_patient_once():
  patients = np.array([f"p{i:02d}" for i in range(34)])
  labels = np.array([1] * 16 + [0] * 18)
  for k in (2, 3, 5, 7):
    a = cv.patient_folds(patients, labels, k, seed=3)
    assert sorted(a) == sorted(patients.tolist()) and set(a.values()) == set(range(k))
    pos = np.bincount([a[p] for p, y in zip(patients, labels) if y], minlength=k)
    assert pos.max() - pos.min() <= 1  # stratified
  assert cv.patient_folds(patients, labels, 5, 3) == cv.patient_folds(patients, labels, 5, 3)
  assert cv.patient_folds(patients, labels, 5, 3) != cv.patient_folds(patients, labels, 5, 4)
  with pytest.raises(UserError, match="rarer class has 2 of these 6 patients"):
    cv.patient_folds(patients[:6], np.array([1, 1, 0, 0, 0, 0]), 3, 0)


def test_cohort_refuses_a_patient_with_two_labels():
  c = cv.Cohort(np.array(["a", "a", "b"]), np.array([1, 0, 1]), ["x", "y", "z"])
  with pytest.raises(UserError, match="patient 'a' has records with different labels"):
    c.patients()


@pytest.mark.slow
def test_cv_end_to_end_on_the_smoke_cohort(tmp_path):
  """python -m echojax.cv on lvad_transfer:smoke as a user runs it (one device, in the user's folder): the EF
  initialisation trained first, 2-fold CV of two rows + nested, the table, the folds, the fold-ensemble predict."""
  from echojax.data.prepare import ensure_synthetic
  from echojax.predict import predict_cv

  env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
  flags = [f for f in env.pop("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  if flags:  # the tests' 8 fake devices off: one device, as a user's CPU run
    env["XLA_FLAGS"] = " ".join(flags)
  out = tmp_path / "cv"
  cmd = [sys.executable, "-m", "echojax.cv", "--config", "lvad_transfer:smoke", "--folds", "2", "--rows",
         "transfer,scratch", "--out", str(out), "--bootstrap", "200", "--permutations", "500"]
  proc = subprocess.run(cmd + ["--nested", "--inner-folds", "2"], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "workdirs" / "ef_classification_smoke" / "config.json").is_file()  # get_cv's pretrain
  assert "| K-Fold | Model | Dropout/Reg | Test Acc (+-) |" in proc.stdout
  with (out / "cv_table.csv").open() as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0])[:len(cv.COLUMNS)] == list(cv.COLUMNS)
  assert [r["Model"] for r in rows] == ["transfer", "scratch", "nested"]
  assert rows[0]["Dropout/Reg"] == "0.8/0.1/0.8" and rows[2]["Dropout/Reg"].startswith("nested: ")
  assert all(r["Patients"] == "12" and r["Folds run"] == "2" for r in rows)
  with (out / "oof_predictions.csv").open() as f:
    oof = list(csv.DictReader(f))
  for row in ("transfer", "scratch", "nested"):
    mine = [r["patient"] for r in oof if r["row"] == row]
    assert sorted(mine) == sorted(set(mine)) and len(mine) == 12  # every patient scored once, out of fold
  for fold in (0, 1):
    s = json.loads((out / "splits" / "k2_s0" / f"fold{fold}.json").read_text())
    assert not set(s["patients"]["cv_train"]) & set(s["patients"]["cv_test"])
    assert len(s["patients"]["cv_test"]) == 6
  manifest = json.loads((out / "cv.json").read_text())
  dirs = [j["workdir"] for j in manifest["jobs"]]
  assert len(dirs) == len(set(dirs)) == 6  # every fold its own workdir (and orbax managers)
  scratch = json.loads((out / "scratch" / "k2_s0" / "fold0" / "config.json").read_text())
  transfer = json.loads((out / "transfer" / "k2_s0" / "fold0" / "config.json").read_text())
  assert scratch["init_from"] is None and transfer["init_from"].endswith("ef_classification_smoke")
  assert (out / "cv_auroc.png").stat().st_size > 0
  # the fold ensemble on two cines of the raw cohort (read with the LVAD mask)
  raw = ensure_synthetic("lvad", "112", num=12).parent / "raw"
  cines = sorted((raw / "studies").rglob("*.avi"))[:2]
  res = predict_cv(out, cines, row="transfer")
  assert len(res.rows) == 2
  r0 = res.rows[0]
  folds = [r0["prob_died_fold0"], r0["prob_died_fold1"]]
  assert r0["prob_died"] == pytest.approx(np.mean(folds), abs=1e-5)
  assert r0["prob_died_std"] == pytest.approx(np.std(folds, ddof=1), abs=1e-5)
  assert res.csv_path.is_file()
  # --collect rebuilds the table from the evaluated folds without training
  before = (out / "cv_table.csv").read_text().splitlines()
  proc = subprocess.run(cmd + ["--collect"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (out / "cv_table.csv").read_text().splitlines() == before[:3]
  assert "cv folds" not in proc.stderr
  # --print: one line per fold (train, then evaluate on both subsets), runnable anywhere
  proc = subprocess.run(cmd + ["--print"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("python -m echojax.train")]
  assert len(lines) == 4  # 2 rows x 2 folds
  assert all("--config.data.split_file=" in ln and ln.count("--checkpoint latest") == 2 for ln in lines)
  assert "init=none" in lines[2] and "--collect" in proc.stdout.splitlines()[-1]
  # --slurm: one sbatch script per fold, each running one fold with --only; --only runs that fold alone
  proc = subprocess.run(cmd + ["--slurm", str(tmp_path / "sbatch")], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  scripts = sorted((tmp_path / "sbatch").glob("*.sbatch"))
  assert len(scripts) == 4
  srun = [ln for ln in scripts[0].read_text().splitlines() if ln.startswith("srun ")][0]
  assert "echojax.cv" in srun and "--only scratch/k2_s0/fold0" in srun and f"--out {out}" in srun
  only = [a for a in srun.split()[1:]]
  proc = subprocess.run([sys.executable if a == "python" else a for a in only], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0 and "fold scratch/k2_s0/fold0 done" in proc.stdout, proc.stderr[-3000:]
