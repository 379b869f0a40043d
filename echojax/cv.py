"""Cross-validation as a run: stratified, patient-level k-fold CV of a config, every fold trained from the same
initial weights in its own workdir, and the published table with what a mean of per-fold AUROCs leaves out.

    python -m echojax.cv --config lvad_transfer:demo --folds 5                       # the README's demo table
    python -m echojax.cv --config lvad_transfer --folds 2,3,5,7 --repeats 5 --rows transfer,scratch,no_mask
    python -m echojax.cv --config lvad_transfer --folds 5 --nested                   # + a row tuned by nested CV
    python -m echojax.cv --config lvad_transfer --folds 5 --print    # one train + evaluate command per fold
    python -m echojax.cv --config lvad_transfer --folds 5 --slurm sbatch/   # one SLURM job per fold (--only)
    python -m echojax.cv --config lvad_transfer --folds 5 --collect  # the tables from folds run elsewhere
    python -m echojax.cv --config lvad_transfer:demo --folds 5 --config.optim.lr=3e-4   # overrides: every fold

The config file says how it is cross-validated (``get_cv(arg)`` beside ``get_config``, e.g.
``experiments/lvad_transfer.py``): the record features that group and stratify the folds (``group``: every
patient's cines in one fold; ``label``), the settings compared side by side (``rows``: config-argument additions,
e.g. ``scratch: init=none``), the hyperparameter ``grid`` nested CV chooses from, a ``setting(config)`` text for the
table's Dropout/Reg column and an optional ``pretrain`` (workdir, config) trained first when the config initialises
from that workdir and it does not exist yet.

Folds: the patients of the config's training split (``data.train_split``, the whole cohort), stratified by their
label (scikit-learn's ``StratifiedKFold``, shuffled with seed ``--seed + repeat``), the same patients in the same
folds for every row. Each fold is a ``data.split_file`` (``<out>/splits/k<K>_s<S>/fold<i>.json``) naming the
records of ``cv_train`` and ``cv_test``; the fold trains on ``cv_train`` into
``<out>/<row>/k<K>_s<S>/fold<i>`` (its own checkpoints), then ``echojax.evaluate`` scores its last checkpoint
(no checkpoint is picked on a test fold) on both subsets, every clip of each cine, into ``eval_cv_test`` and
``eval_cv_train``. Rerunning skips finished folds and resumes a killed one. Folds run in parallel elsewhere:
``--print`` (their train + evaluate commands), ``--slurm DIR`` (one sbatch script per fold through
``launch/slurm.py``, each running ``--only ROW/kK_sS/foldI``), then ``--collect``.

Scores are per patient (the mean probability over a patient's cines). Written into ``<out>``:

- ``cv_table.csv`` / ``cv_table.md``: per row and K, the published columns (K-Fold, Model, Dropout/Reg, then Test
  and Train accuracy, AUROC and AUPRC as mean +- std over the folds, of every repeat), then the pooled
  out-of-fold AUROC and AUPRC with percentile-bootstrap 95% CIs (every patient scored once, by the fold that did not
  train on it; with repeats, each patient's out-of-fold probability averaged over them), the repeats' spread of
  the pooled AUROC, and the one-sided permutation p-value of the pooled AUROC;
- ``cv_auroc.png``: fold-mean AUROC +- std beside the pooled AUROC and its CI, per row and K;
- ``oof_predictions.csv``: row, K, seed, fold, patient, label, out-of-fold probability;
- ``cv.json``: the plan (config, rows, folds, every fold's workdir): ``python -m echojax.predict --workdir <out>``
  scores new cines with a row's fold ensemble (mean and spread over the folds).

Nested CV (``--nested``, local only): for each outer fold every ``grid`` setting is cross-validated on the outer
training patients alone (``--inner-folds``, default 3), the setting with the best pooled inner AUROC trains on the
outer training folds and is scored on the outer test fold; row ``nested`` reports that, so no number of it was
tuned on its own test patients (the published rows' settings differ per K and were chosen on the folds they
report).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from echojax import config as config_lib
from echojax.cv_report import (COLUMNS, EXTRA_COLUMNS, TEST, TRAIN, fold_metrics, fold_scores,  # noqa: F401
                               summarize_row, write_tables)
from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.cv")

CV_FILE = "cv.json"


# ----------------------------------------------------------------------------------------------------------------
# The cohort and its folds


@dataclasses.dataclass
class Cohort:
  """Per record of the training split: its group (patient), label and file name."""
  groups: np.ndarray
  labels: np.ndarray
  files: list[str]

  def patients(self) -> tuple[np.ndarray, np.ndarray]:
    """(sorted patient ids, one label each); a patient whose records disagree on the label is a UserError."""
    ids = np.unique(self.groups)
    labels = []
    for pid in ids:
      mine = np.unique(self.labels[self.groups == pid])
      if len(mine) != 1:
        raise UserError(f"patient {str(pid)!r} has records with different labels {mine.tolist()}: a patient-level "
                        "cross-validation needs one label per patient; fix the labels file")
      labels.append(int(mine[0]))
    return ids, np.asarray(labels)


def read_cohort(config, group: str, label: str) -> Cohort:
  """The training split's group / label / file name of every record (a progress bar over big splits)."""
  from echojax.data.sources import open_source

  split = config.data.train_split
  source, _ = open_source(config.data, split)
  rows = []
  for i in range(len(source)):
    rec = source[i]
    for key in (group, label):
      if key not in rec:
        raise UserError(f"cross-validation groups by {group!r} and stratifies by {label!r} (get_cv of "
                        f"{config.config_name}), but records of {config.data.name} have no {key!r}; features: "
                        f"{sorted(rec)}")
    rows.append((_text(rec[group]), int(np.asarray(rec[label])), _text(rec.get("file_name", str(i)))))
  if not rows:
    raise UserError(f"split {split!r} of {config.data.name} is empty")
  g, y, f = zip(*rows)
  return Cohort(np.asarray(g), np.asarray(y), list(f))


def _text(v) -> str:
  v = np.asarray(v).item() if np.ndim(v) == 0 else v
  return v.decode() if isinstance(v, bytes) else str(v)


def patient_folds(patients: np.ndarray, labels: np.ndarray, k: int, seed: int, what: str = "--folds") -> dict[str, int]:
  """{patient: fold} for k stratified folds (scikit-learn's StratifiedKFold over patients, shuffled by seed);
  ``what`` names the option that asked for them in errors."""
  from sklearn.model_selection import StratifiedKFold

  counts = np.bincount(labels, minlength=2)
  if k < 2:
    raise UserError(f"{what} {k}: a cross-validation needs at least 2 folds")
  if counts.min() < k:
    raise UserError(f"{what} {k}: the rarer class has {counts.min()} of these {len(labels)} patients, fewer than the "
                    f"{k} folds, so some fold would have none of it; use at most {counts.min()} folds")
  out = {}
  for fold, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(patients, labels)):
    out.update({str(p): fold for p in patients[test]})
  return out


def write_fold_splits(path: Path, cohort: Cohort, assign: dict[str, int], fold: int, of: str,
                      within: np.ndarray | None = None) -> Path:
  """The fold's ``data.split_file``: records of patients in fold ``fold`` -> cv_test, the others -> cv_train;
  ``within`` (record indices) restricts both to a subset (nested CV's outer training folds)."""
  from echojax.data.sources import write_split_file

  idx = np.arange(len(cohort.groups)) if within is None else np.asarray(within)
  fold_of = np.array([assign[str(g)] for g in cohort.groups[idx]])
  train, test = idx[fold_of != fold], idx[fold_of == fold]
  return write_split_file(path, {TRAIN: (of, train), TEST: (of, test)},
                          patients={TRAIN: sorted(set(cohort.groups[train].tolist())),
                                    TEST: sorted(set(cohort.groups[test].tolist()))})


# ----------------------------------------------------------------------------------------------------------------
# Jobs: one fold of one row


@dataclasses.dataclass
class Job:
  row: str
  k: int
  seed: int
  fold: int
  spec: str
  overrides: dict
  workdir: Path

  def done(self) -> bool:
    return all((self.workdir / f"eval_{s}" / "predictions.csv").is_file() for s in (TRAIN, TEST))


def job_id(job: Job) -> str:
  """``transfer/k5_s0/fold3``: a fold's name for --only (its workdir below the CV folder)."""
  return f"{job.row}/k{job.k}_s{job.seed}/fold{job.fold}"


def fold_overrides(split_file: Path, extra: dict) -> dict:
  return {**extra, "data.split_file": str(split_file.absolute()), "data.train_split": TRAIN}


def row_spec(spec: str, add: str) -> str:
  """``lvad_transfer:demo`` + ``init=none`` -> ``lvad_transfer:demo,init=none``."""
  name, arg = config_lib.split_spec(spec)
  parts = [p for p in (arg, add) if p]
  return name + (":" + ",".join(parts) if parts else "")


def run_job(job: Job) -> None:
  """Train the fold (resuming a killed one) and score its last checkpoint on both subsets."""
  from echojax import evaluate, train

  if job.done():
    return
  train.train(config_lib.load_config(job.spec, job.overrides), job.workdir)  # a finished run resumes at its end
  for split in (TRAIN, TEST):
    evaluate.evaluate_workdir(job.workdir, split=split, clips="all", checkpoint="latest", bootstrap=0,
                              out_dir=job.workdir / f"eval_{split}")


def job_commands(job: Job, python: str = "python") -> list[list[str]]:
  """The job as shell commands (for --print: any scheduler, folds in parallel)."""
  train = [python, "-m", "echojax.train", "--config", job.spec, "--workdir", str(job.workdir)]
  train += [f"--config.{k}={v}" for k, v in job.overrides.items()]
  evals = [[python, "-m", "echojax.evaluate", "--workdir", str(job.workdir), "--split", s, "--checkpoint", "latest",
            "--clips", "all", "--bootstrap", "0", "--out", str(job.workdir / f"eval_{s}")] for s in (TRAIN, TEST)]
  return [train, *evals]


# ----------------------------------------------------------------------------------------------------------------
# The plan and the command


@dataclasses.dataclass
class Plan:
  spec: str
  out: Path
  folds: list[int]
  repeats: int
  seed: int
  rows: dict[str, str]
  overrides: dict
  cv: dict
  cohort: Cohort

  def jobs(self, row: str, k: int) -> list[Job]:
    out = []
    patients, labels = self.cohort.patients()
    for r in range(self.repeats):
      seed = self.seed + r
      assign = patient_folds(patients, labels, k, seed)
      for fold in range(k):
        split = write_fold_splits(self.out / "splits" / f"k{k}_s{seed}" / f"fold{fold}.json", self.cohort, assign,
                                  fold, self.base_config.data.train_split)
        out.append(Job(row, k, seed, fold, row_spec(self.spec, self.rows[row]), fold_overrides(split, self.overrides),
                       self.out / row / f"k{k}_s{seed}" / f"fold{fold}"))
    return out

  @property
  def base_config(self):
    return config_lib.load_config(self.spec, self.overrides)


def nested_jobs(plan: Plan, k: int, inner_k: int) -> list[Job]:
  """Nested CV: inner CV of every grid setting on each outer fold's training patients, the winner retrained on
  them (local runs only: the choice needs the inner results). Returns the outer jobs, with ``row="nested"`` and
  the chosen setting in ``overrides["_setting"]``."""
  patients, labels = plan.cohort.patients()
  grid = plan.cv.get("grid") or {}
  if not grid:
    raise UserError(f"--nested: get_cv of {plan.spec} has no 'grid' of settings to choose from")
  of = plan.base_config.data.train_split
  outer_jobs = []
  for r in range(plan.repeats):
    seed = plan.seed + r
    assign = patient_folds(patients, labels, k, seed)
    for fold in range(k):
      base = plan.out / "nested" / f"k{k}_s{seed}" / f"fold{fold}"
      within = np.array([i for i, g in enumerate(plan.cohort.groups) if assign[str(g)] != fold])
      inner_p = np.array([p for p in patients if assign[str(p)] != fold])
      inner_y = np.array([lab for p, lab in zip(patients, labels) if assign[str(p)] != fold])
      inner_assign = patient_folds(inner_p, inner_y, inner_k, seed,
                                   f"--inner-folds (outer K={k}, fold {fold}'s training patients)")
      scores = {}
      for name, add in grid.items():
        inner = []
        for j in range(inner_k):
          split = write_fold_splits(base / "splits" / f"inner{j}.json", plan.cohort, inner_assign, j, of, within)
          job = Job(f"nested-inner:{name}", inner_k, seed, j, row_spec(plan.spec, add),
                    fold_overrides(split, plan.overrides), base / "inner" / _safe(name) / f"fold{j}")
          run_job(job)
          inner.append(job)
        pooled = {}
        for job in inner:
          pooled.update(fold_scores(job, plan.cohort, TEST))
        scores[name] = fold_metrics(pooled)["auroc"]
      best = max(scores, key=lambda n: (np.nan_to_num(scores[n], nan=-1.0), -list(grid).index(n)))
      log.info("nested K=%d seed %d outer fold %d: inner pooled AUROC %s -> %s", k, seed, fold,
               ", ".join(f"{n} {v:.3f}" for n, v in scores.items()), best)
      (base / "inner_choice.json").write_text(json.dumps({"inner_auroc": scores, "chosen": best}, indent=1))
      split = write_fold_splits(plan.out / "splits" / f"k{k}_s{seed}" / f"fold{fold}.json", plan.cohort, assign,
                                fold, of)
      outer_jobs.append(Job("nested", k, seed, fold, row_spec(plan.spec, grid[best]),
                            {**fold_overrides(split, plan.overrides), "_setting": best}, base / "final"))
  return outer_jobs


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


def _strip(job: Job) -> Job:
  return dataclasses.replace(job, overrides={k: v for k, v in job.overrides.items() if not k.startswith("_")})


def make_plan(spec: str, overrides: dict, folds: list[int], repeats: int, seed: int, rows: list[str] | None,
              out: Path | None) -> Plan:
  name, arg = config_lib.split_spec(spec)
  module = config_lib._load_module(name)
  if not hasattr(module, "get_cv"):
    raise UserError(f"config {name} has no get_cv(arg): it does not say how it is cross-validated (which feature "
                    "groups records into patients, which is the label); see experiments/lvad_transfer.py")
  cv = module.get_cv(arg)
  known = dict(cv.get("rows") or {"default": ""})
  rows = rows or list(known)
  unknown = [r for r in rows if r not in known]
  if unknown:
    raise UserError(f"--rows {','.join(unknown)}: not rows of {name} (get_cv); rows: {', '.join(known)}")
  config = config_lib.load_config(spec, overrides)
  cohort = read_cohort(config, cv["group"], cv["label"])
  out = Path(out) if out else Path("workdirs") / "cv" / config_lib.default_workdir(spec).name
  return Plan(spec, out, folds, repeats, seed, {r: known[r] for r in rows}, dict(overrides), cv, cohort)


def ensure_pretrain(plan: Plan, train_missing: bool = True) -> None:
  """Train the config's initialisation first (get_cv ``pretrain``) when the config starts from it and it is
  missing (``train_missing``; --only/--slurm jobs would race to train it, so they stop instead); an ``init_from``
  that is missing otherwise is a UserError before any fold trains."""
  from echojax import train

  for row in plan.rows:
    config = config_lib.load_config(row_spec(plan.spec, plan.rows[row]), plan.overrides)
    init = config.init_from
    if not init or Path(init).exists():
      continue
    pre = plan.cv.get("pretrain")
    if pre and Path(pre[0]) == Path(init) and not train_missing:
      raise UserError(f"row {row}: init_from={init!r} does not exist yet; train it once first (python -m "
                      f"echojax.train --config {pre[1]} --workdir {init}) before the folds' jobs start")
    if pre and Path(pre[0]) == Path(init):
      log.info("init_from %s does not exist: training it first (python -m echojax.train --config %s)", init, pre[1])
      train.train(config_lib.load_config(pre[1]), Path(pre[0]))
      continue
    raise UserError(f"row {row}: config field init_from={init!r} does not exist; train the run it names first, or "
                    "point --config.init_from at a finished run's workdir")


def run_plan(plan: Plan, *, nested: bool, inner_folds: int, bootstrap: int, permutations: int,
             collect_only: bool = False) -> dict[str, Path]:
  from tqdm import tqdm

  groups = [(row, k, plan.jobs(row, k)) for k in plan.folds for row in plan.rows]
  total = sum(len(j) for _, _, j in groups)
  if not collect_only:
    ensure_pretrain(plan)
    bar = tqdm(total=total, desc="cv folds", unit="fold")
    for row, k, jobs in groups:
      for job in jobs:
        bar.set_postfix_str(f"{row} K={k} s{job.seed} fold {job.fold}")
        t0 = time.time()
        run_job(job)
        log.info("%s K=%d seed %d fold %d: %.0f s", row, k, job.seed, job.fold, time.time() - t0)
        bar.update(1)
    bar.close()
    if nested:
      for k in plan.folds:
        groups.append(("nested", k, nested_jobs(plan, k, inner_folds)))
        for job in groups[-1][2]:
          run_job(_strip(job))
  table, oof = [], []
  for row, k, jobs in groups:
    stripped = [_strip(j) for j in jobs]
    r, o = summarize_row(stripped, plan.cohort, bootstrap=bootstrap, permutations=permutations)
    r["Dropout/Reg"] = _settings(plan, jobs)
    table.append(r)
    oof += o
  plan.out.mkdir(parents=True, exist_ok=True)
  title = (f"Cross-validation of {plan.spec} ({len(plan.cohort.patients()[0])} patients, "
           f"{plan.repeats} repeat(s) of the fold split, seed {plan.seed})")
  paths = write_tables(table, oof, plan.out, title)
  manifest = {"config": plan.spec, "overrides": plan.overrides, "folds": plan.folds, "repeats": plan.repeats,
              "seed": plan.seed, "rows": plan.rows, "jobs": [
                  {"row": j.row, "k": j.k, "seed": j.seed, "fold": j.fold, "spec": j.spec,
                   "workdir": str(j.workdir.absolute()), "setting": j.overrides.get("_setting")}
                  for _, _, jobs in groups for j in jobs],
              "results": [{k: v for k, v in r.items() if not k.startswith("_")} | {
                  "pooled_auroc": r["_pooled"]["auroc"], "pooled_auprc": r["_pooled"]["auprc"],
                  "permutation": {k: v for k, v in r["_perm"].items() if k != "notes"}} for r in table]}
  from echojax.metrics import json_safe
  (plan.out / CV_FILE).write_text(json.dumps(json_safe(manifest), indent=1))
  paths["json"] = plan.out / CV_FILE
  return paths


def _settings(plan: Plan, jobs: list[Job]) -> str:
  """The Dropout/Reg column: get_cv's ``setting(config)`` of the row's config; nested: the choices and counts."""
  chosen = [j.overrides.get("_setting") for j in jobs if j.overrides.get("_setting")]
  if chosen:
    names, counts = np.unique(chosen, return_counts=True)
    return "nested: " + ", ".join(f"{n} x{c}" for n, c in zip(names, counts))
  describe = plan.cv.get("setting")
  return describe(config_lib.load_config(jobs[0].spec, plan.overrides)) if describe else ""


def parse_folds(text: str) -> list[int]:
  try:
    folds = [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise UserError(f"--folds {text!r}: give fold counts separated by commas, e.g. 2,3,5,7") from None
  if not folds:
    raise UserError("--folds is empty; e.g. --folds 5")
  return folds


@cli_main
def main(argv: list[str] | None = None) -> None:
  from echojax.run import setup_logging

  setup_logging()
  p = argparse.ArgumentParser(prog="python -m echojax.cv", description=__doc__.split("\n\n")[0],
                              epilog="Any --config.KEY=VALUE applies to every fold's config.")
  p.add_argument("--config", required=True, help="NAME[:ARG] of a config with get_cv (e.g. lvad_transfer:demo)")
  p.add_argument("--folds", default="5", help="fold counts, comma-separated (default 5; the published 2,3,5,7)")
  p.add_argument("--repeats", type=int, default=1, help="repeated CV: fold splits with seeds seed..seed+R-1")
  p.add_argument("--seed", type=int, default=0, help="seed of the first fold split")
  p.add_argument("--rows", default=None, help="rows of get_cv to run, comma-separated (default: all of them)")
  p.add_argument("--nested", action="store_true", help="add a row whose settings nested CV chose (local only)")
  p.add_argument("--inner-folds", type=int, default=3, help="folds of the inner CV of --nested (default 3)")
  p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the pooled CIs")
  p.add_argument("--permutations", type=int, default=10000, help="label shuffles of the permutation test")
  p.add_argument("--out", default=None, help="output folder (default workdirs/cv/<config tag>)")
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--print", action="store_true", help="print every fold's commands (run them anywhere, in "
                    "parallel), then build the tables with --collect")
  mode.add_argument("--collect", action="store_true", help="only build the tables from evaluated folds")
  mode.add_argument("--only", metavar="ROW/kK_sS/foldI", help="run one fold (train + evaluate) and stop: what "
                    "--slurm's scripts run, one fold per job")
  mode.add_argument("--slurm", metavar="DIR", help="write one sbatch script per fold into DIR (launch/slurm.py; "
                    "each runs this command with --only), then build the tables with --collect")
  p.add_argument("--gpus-per-node", type=int, default=1, help="--slurm: GPUs per fold's job (default 1)")
  args, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
  overrides = {}
  for item in rest:
    if not item.startswith("--config.") or "=" not in item:
      raise UserError(f"unrecognised argument {item!r}; overrides look like --config.optim.lr=3e-4")
    key, _, value = item[len("--config."):].partition("=")
    overrides[key] = value
  if args.repeats < 1:
    raise UserError(f"--repeats {args.repeats} must be >= 1")
  rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
  plan = make_plan(args.config, overrides, parse_folds(args.folds), args.repeats, args.seed, rows, args.out)
  if args.print:
    if args.nested:
      raise UserError("--nested chooses each outer fold's setting from its inner folds' results, so it runs "
                      "locally; --print the plain rows, or run --nested here")
    for k in plan.folds:
      for row in plan.rows:
        for job in plan.jobs(row, k):
          print(" && ".join(shlex.join(c) for c in job_commands(job)))
    print(f"# then: python -m echojax.cv --config {args.config} --folds {args.folds} --collect"
          + (f" --out {args.out}" if args.out else ""))
    return
  if args.only or args.slurm:
    if args.nested:
      raise UserError("--nested chooses each outer fold's setting from its inner folds' results, so it runs "
                      "locally; use --only/--slurm for the plain rows")
    jobs = {job_id(j): j for k in plan.folds for row in plan.rows for j in plan.jobs(row, k)}
    if args.only:
      if args.only not in jobs:
        raise UserError(f"--only {args.only!r} is not a fold of this plan; folds: {', '.join(list(jobs)[:6])}, ...")
      ensure_pretrain(plan, train_missing=False)
      run_job(jobs[args.only])
      print(f"[cv] fold {args.only} done: {jobs[args.only].workdir}")
      return
    from launch import slurm

    ensure_pretrain(plan, train_missing=False)

    base = ["--config", args.config, "--folds", args.folds, "--repeats", str(args.repeats), "--seed", str(args.seed),
            "--rows", ",".join(plan.rows), "--out", str(plan.out.absolute())]
    base += [f"--config.{k}={v}" for k, v in overrides.items()]
    for jid, job in jobs.items():
      path = slurm.write_script(Path(args.slurm) / f"{_safe(jid)}.sbatch",
                                ["python", "-m", "echojax.cv", *base, "--only", jid], nodes=1,
                                gpus_per_node=args.gpus_per_node, job_name=f"cv-{_safe(jid)}")
      print(f"sbatch {path}")
    print(f"# then: python -m echojax.cv {shlex.join(base)} --collect")
    return
  paths = run_plan(plan, nested=args.nested, inner_folds=args.inner_folds, bootstrap=args.bootstrap,
                   permutations=args.permutations, collect_only=args.collect)
  print(paths["md"].read_text())
  print(f"[cv] {paths['csv']}, {paths['md']}, {paths['png']}, {paths['oof']}, {paths['json']}")


if __name__ == "__main__":
  main()
