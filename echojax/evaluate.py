"""Evaluate a trained run on a split: metrics JSON, per-video predictions CSV and PNG plots.

    python -m echojax.evaluate --workdir DIR [--split test] [--clips all|one|beats] [--checkpoint best|latest|auto]
                               [--bootstrap 1000] [--data-dir OTHER_PREPARED_DATA] [--out DIR]

Rebuilds the run's model from ``DIR/config.json``, restores the checkpoint onto the current devices, runs the
model over the split in fixed-shape batches (padding rows carry ``valid=False`` and are dropped), averages the
predictions of all clips of a video (test-time augmentation with ``--clips all``; ``--clips beats``: one clip per
heartbeat, EchoNet-Dynamic's beat-by-beat evaluation, with the all-clips metrics beside it), then writes into
``DIR/eval/<split>_<checkpoint>/``: ``metrics.json``, ``predictions.csv`` (file name / index, target, prediction,
per-class probabilities for classification) and the task's plots plus training curves from ``metrics.jsonl``.

The trainer validates with the same ``Evaluator`` (best checkpoint, early stopping).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from echojax import run as run_lib
from echojax import sharding, tasks
from echojax.data.options import CLIPS
from echojax.errors import UserError, cli_main
from echojax.metrics import json_safe
from echojax.models import layers

log = logging.getLogger("echojax.evaluate")


AUX_PREFIX = "aux:"
AUX_MAX_SIZE = 8  # per-sample aux arrays up to this many values go to the predictions CSV by default


def per_sample_aux(aux: Any, batch: int, keys=None) -> dict:
  """Per-sample model aux arrays for the predictions CSV (e.g. the fusion model's ``gate`` (B,2)).

  ``keys`` (``config.eval.aux_keys``) names them; by default every aux array of shape (B,) or (B, k) with
  k <= AUX_MAX_SIZE except ``features`` is kept, so per-sample gate weights are recorded without writing whole
  feature vectors or per-class logits."""
  if not isinstance(aux, dict):
    return {}
  out = {}
  for k, v in aux.items():
    if not hasattr(v, "shape") or v.ndim not in (1, 2) or v.shape[0] != batch:
      continue
    if keys is not None:
      if k in keys:
        out[k] = v.astype(jnp.float32)
    elif k != "features" and (v.ndim == 1 or v.shape[1] <= AUX_MAX_SIZE):
      out[k] = v.astype(jnp.float32)
  return out


def aux_columns(preds: dict) -> dict[str, np.ndarray]:
  """CSV columns from the ``aux:`` entries of per-video predictions: ``gate`` (N,2) -> ``gate_0``, ``gate_1``."""
  cols = {}
  for k, v in preds.items():
    if not k.startswith(AUX_PREFIX):
      continue
    name, v = k[len(AUX_PREFIX):], np.asarray(v)
    if v.ndim == 1:
      cols[name] = v
    else:
      for j in range(v.shape[1]):
        cols[f"{name}_{j}"] = v[:, j]
  return cols


class Evaluator:
  """Runs a model over a split with fixed shapes and aggregates per video. One compile per batch shape."""

  def __init__(self, config, model, task: tasks.Task, mesh, shardings: dict):
    """``shardings``: the variables' (``params``, ``batch_stats``; extra keys such as a train state's are
    ignored)."""
    self.config, self.model, self.task, self.mesh = config, model, task, mesh
    self.loaders: dict = {}
    var_sh = {"params": shardings["params"], "batch_stats": shardings["batch_stats"]}
    batch_sh = sharding.batch_sharding(mesh)
    self.batch_sh = batch_sh
    forward = run_lib.eval_forward(model, config)
    aux_keys = config.eval.aux_keys

    def step(variables, batch):
      out, aux = forward(variables, batch)
      res = dict(task.decode(out))
      res.update({AUX_PREFIX + k: v for k, v in per_sample_aux(aux, out.shape[0], aux_keys).items()})
      loss, _ = task.loss(out, batch)
      n = jnp.sum(batch["valid"]) if "valid" in batch else out.shape[0]
      res["_loss_sum"] = jnp.broadcast_to(loss * n / out.shape[0], (out.shape[0],))
      res.update({k: batch[k] for k in ("index", "valid", "clip_id") if k in batch})
      res.update({"target:" + k: batch[k] for k in task.target_keys})  # targets travel beside predictions
      return res

    self.step = layers.jit(step, in_shardings=(var_sh, batch_sh), out_shardings=batch_sh)

  def loader(self, split: str, clips: Any, data: dict | None = None, name: str | None = None):
    """The loader of ``split`` (``data``: overrides of config.data, e.g. an external dataset), cached under
    ``name`` (default: split and clips)."""
    key = name or (split, str(clips))
    if key not in self.loaders:
      self.loaders[key] = run_lib.make_loader(self.config, split, train=False,
                                              data_cfg=run_lib.eval_data_cfg(self.config, clips, data))
    return self.loaders[key]

  def per_video(self, state: dict, split: str, clips: Any = "one", data: dict | None = None,
              name: str | None = None) -> tuple[dict, dict, np.ndarray, float]:
    """(per-video predictions, per-video targets, record indices, mean clip loss) over ``split``."""
    loader = self.loader(split, clips, data, name)
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    outs = []
    for batch in iter(loader):
      outs.append(self.step(variables, sharding.global_batch(run_lib.numeric(batch), self.batch_sh)))
    if not outs:
      raise UserError(f"split {split!r} gave no batches; check the prepared data (config.data.data_dir)")
    host = [_gather(o) for o in outs]
    cat = {k: np.concatenate([h[k] for h in host]) for k in host[0]}
    valid = cat.pop("valid").astype(bool) if "valid" in cat else np.ones(len(cat["_loss_sum"]), bool)
    loss_sum = cat.pop("_loss_sum")
    mean_loss = float(loss_sum.sum() / max(valid.sum(), 1))
    cat = {k: v[valid] for k, v in cat.items()}
    index = cat.pop("index") if "index" in cat else np.arange(int(valid.sum()))
    cat.pop("clip_id", None)
    uniq, inverse = np.unique(index, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    per_video = {}
    for k, v in cat.items():
      acc = np.zeros((len(uniq),) + v.shape[1:], np.float64)
      np.add.at(acc, inverse, v.astype(np.float64))
      per_video[k] = acc / counts.reshape((-1,) + (1,) * (v.ndim - 1))
    # each scalar prediction's clip values with their video (beat_columns groups them; nothing computed here)
    self.clip_values = (inverse, {k: v for k, v in cat.items()
                                  if v.ndim == 1 and not k.startswith(("target:", "_"))})
    targets = {k: per_video.pop("target:" + k) for k in self.task.target_keys}
    return per_video, targets, uniq, mean_loss

  def run(self, state: dict, split: str, clips: Any = "one", bootstrap: int = 0, data: dict | None = None,
          name: str | None = None) -> dict:
    preds, targets, _, loss = self.per_video(state, split, clips, data, name)
    return {"loss": loss, **self.task.metrics(preds, targets, bootstrap=bootstrap)}


# ----------------------------------------------------------------------------------------------------------------
# When the evaluations of config.evals run during training


def check_evaluations(config, spe: int) -> None:
  """Every evaluation that will run (a cadence or ``at_end``) has its data overrides right and its split in the
  prepared data, before any training: a prepared set without a val split used to train, then die at the first
  validation."""
  from echojax.data import datasets, pipeline

  for name, e in sorted(config.evals.items()):
    data_cfg = run_lib.eval_data_cfg(config, e.clips, e.data.to_dict())
    if not (_every(e, spe) or e.at_end) or datasets.custom_loader(data_cfg.name) is not None:
      continue
    try:
      pipeline.open_source(data_cfg, e.split)
    except UserError as err:
      raise UserError(f"config.evals.{name} cannot run: {err}. Name another split with "
                      f"--config.evals.{name}.split=SPLIT, or switch it off with --config.evals.{name}.every_steps=0 "
                      f"--config.evals.{name}.every_epochs=0" + (" --config.evals.{name}.at_end=false".format(
                          name=name) if e.at_end else "")) from None


def periodic_evals(config, spe: int) -> list[tuple[str, Any, int]]:
  """(name, entry, interval in steps) of the ``config.evals`` entries with a cadence; at most one picks the best
  checkpoint (``pick_best``)."""
  out = [(name, e, _every(e, spe)) for name, e in sorted(config.evals.items())]
  out = [x for x in out if x[2]]
  pickers = [n for n, e, _ in out if e.pick_best]
  if len(pickers) > 1:
    raise UserError(f"config.evals: {', '.join(pickers)} all set pick_best; one evaluation keeps the best "
                    "checkpoint (set pick_best=False on the others)")
  return out


def _every(cfg, spe: int, steps_key: str = "every_steps", epochs_key: str = "every_epochs") -> int:
  """An interval in steps from ``<steps_key>``, else ``<epochs_key>`` x steps per epoch (0 = never)."""
  if cfg.get(steps_key, 0):
    return int(cfg[steps_key])
  return max(1, int(round(cfg.get(epochs_key, 0.0) * spe))) if cfg.get(epochs_key, 0.0) else 0


def _gather(tree):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def file_names(loader, indices: np.ndarray) -> list[str] | None:
  """File names of records, when the loader can tell them: a ``file_names`` list / function, or the records'
  ``file_name`` feature through ``loader.targets``."""
  fn = getattr(loader, "file_names", None)
  if fn is None:
    if not hasattr(loader, "targets"):
      return None
    try:
      names = loader.targets(["file_name"])["file_name"]
    except (UserError, KeyError):
      return None
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(names)[np.asarray(indices)]]
  if callable(fn):
    return [str(x) for x in fn(indices)]
  return [str(fn[int(i)]) for i in indices]


def write_predictions_csv(path: Path, indices, names, columns: dict[str, np.ndarray]) -> None:
  with path.open("w", newline="") as f:
    w = csv.writer(f)
    header = (["file_name"] if names is not None else []) + ["index"] + list(columns)
    w.writerow(header)
    for row, idx in enumerate(indices):
      vals = [columns[c][row] for c in columns]
      vals = [f"{float(v):.6g}" if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, np.integer)
              else v for v in vals]
      w.writerow(([names[row]] if names is not None else []) + [int(idx)] + vals)


def beat_columns(clip_values: tuple[np.ndarray, dict[str, np.ndarray]]) -> dict[str, Any]:
  """Predictions-CSV columns of a beat-by-beat evaluation from ``Evaluator.clip_values`` (each clip's video and
  scalar predictions): ``num_beats`` and, per scalar prediction (``ef``), ``<key>_beat_std`` (std over the beats,
  ddof 0) and ``<key>_beats`` (each beat's value, ";"-separated), in the videos' order."""
  inverse, values = clip_values
  order = np.argsort(inverse, kind="stable")  # clips grouped by video, in clip order
  counts = np.bincount(inverse)
  cols: dict[str, Any] = {"num_beats": counts}
  for k, v in values.items():
    groups = np.split(np.asarray(v, np.float64)[order], np.cumsum(counts)[:-1])
    cols[f"{k}_beat_std"] = np.array([g.std() for g in groups])
    cols[f"{k}_beats"] = np.array([";".join(f"{x:.4g}" for x in g) for g in groups])
  return cols


def loader_input_shape(loader, config) -> tuple[int, ...]:
  """The model input's batch shape, without using up the first batch of the pass that predict() reads (nor
  building the loader, and for clips="all" its clip table, twice): the loader's ``spec()`` (the pipeline's
  ``Loader`` has one); a custom loader without one is probed with a batch of its own pass (custom loaders start a
  pass per iter())."""
  key = run_lib.input_key(config)
  if callable(getattr(loader, "spec", None)):
    return tuple(loader.spec()[key].shape)
  return tuple(next(iter(loader))[key].shape)


def evaluate_workdir(workdir: str | Path, split: str = "test", clips: Any = "all", checkpoint: str = "best",
                     bootstrap: int = 1000, out_dir: str | Path | None = None, data: dict | None = None) -> dict:
  """The CLI's work: restore, predict, write metrics.json / predictions.csv / plots. Returns the metrics."""
  workdir = Path(workdir)
  run = run_lib.Run.load(workdir)
  config, task = run.config, run.task
  loader = run.loader(split, clips, data)
  x_shape = loader_input_shape(loader, config)
  step, checkpoint, variables = run.restore(checkpoint, x_shape)

  ev = Evaluator(config, run.model, task, run.mesh, run.shardings(x_shape))
  ev.loaders["cli"] = loader
  preds, targets, indices, loss = ev.per_video(variables, split, clips, name="cli")
  metrics = {"loss": loss, **task.metrics(preds, targets, bootstrap=bootstrap)}
  columns = {**task.csv_columns(preds, targets), **aux_columns(preds)}
  if clips == "beats":  # beside it, the all-clips figure of the same checkpoint, and the per-beat spread
    columns.update(beat_columns(ev.clip_values))
    ev.loaders["cli_all"] = run.loader(split, "all", data)
    all_preds, all_targets, _, _ = ev.per_video(variables, split, "all", name="cli_all")
    metrics["all_clips"] = task.metrics(all_preds, all_targets, bootstrap=bootstrap)
  tag = f"{Path(str(data['data_dir'])).name}_" if data and data.get("data_dir") else ""  # external data
  out = Path(out_dir) if out_dir else workdir / "eval" / f"{tag}{split}_{checkpoint}"
  out.mkdir(parents=True, exist_ok=True)
  summary = {"workdir": str(workdir), "split": split, "checkpoint": checkpoint, "step": int(step),
             "clips": clips, "num_videos": int(len(indices)),
             "num_classes": int(getattr(task, "num_outputs", 0) or 0) if "accuracy" in metrics else 0,
             "metrics": metrics}
  (out / "metrics.json").write_text(json.dumps(json_safe(summary), indent=2, sort_keys=True))
  write_predictions_csv(out / "predictions.csv", indices, file_names(loader, indices), columns)
  written = task.plots(preds, targets, metrics, out)
  written += training_curves(workdir / "metrics.jsonl", out)
  log.info("wrote %s (metrics.json, predictions.csv, %d plots)", out, len(written))
  return summary


def training_curves(metrics_path: Path, out: Path) -> list[Path]:
  """training_curves.png from the run's metrics.jsonl (none when the run logged nothing)."""
  from echojax import plots

  if not metrics_path.is_file() or not metrics_path.read_text().strip():
    return []
  return [plots.plot_training_curves(metrics_path, out / "training_curves.png")]


@cli_main
def main(argv: list[str] | None = None) -> None:
  run_lib.setup_logging()
  p = argparse.ArgumentParser(prog="python -m echojax.evaluate", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="training run folder (holds config.json and checkpoints/)")
  p.add_argument("--split", default="test")
  p.add_argument("--clips", default="all", choices=list(CLIPS),
                 help="'all': average every clip of a video (test-time augmentation); 'one': one clip per video; "
                      "'beats': one clip per heartbeat (ECG R peaks, else the intensity cycle), the video's value "
                      "their mean, reported beside the all-clips metrics (metrics.all_clips) with the per-beat "
                      "spread in predictions.csv")
  p.add_argument("--checkpoint", default="best", choices=["best", "latest", "auto"],
                 help="best (falls back to latest when no validation ran), latest, or auto")
  p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0 = none)")
  p.add_argument("--data-dir", default=None,
                 help="score another prepared copy of the run's dataset (external validation: e.g. another "
                      "hospital's cines ingested and prepared with the run's --config); outputs go to "
                      "WORKDIR/eval/<data-dir name>_<split>_<checkpoint>")
  p.add_argument("--out", default=None, help="output folder (default WORKDIR/eval/<split>_<checkpoint>)")
  a = p.parse_args(sys.argv[1:] if argv is None else argv)
  summary = evaluate_workdir(a.workdir, a.split, a.clips, a.checkpoint, a.bootstrap, a.out,
                             data={"data_dir": a.data_dir} if a.data_dir else None)
  m = summary["metrics"]
  print(json.dumps(json_safe(m), indent=2, sort_keys=True))
  print(headline(summary))


def headline(summary: dict) -> str:
  """One readable line with the numbers people look for first (beat-by-beat: both figures)."""
  m, where = summary["metrics"], f"{summary['split']} ({summary['num_videos']} items, step {summary['step']})"
  if "all_clips" in m and "mae" in m:
    a = m["all_clips"]
    return (f"{where}: beat-by-beat MAE {m['mae']:.2f}, RMSE {m['rmse']:.2f}, R2 {m['r2']:.3f}; all clips MAE "
            f"{a['mae']:.2f}, RMSE {a['rmse']:.2f}, R2 {a['r2']:.3f}")
  if "mae_train_mean_baseline" in m:
    return (f"{where}: EF MAE {m['mae']:.2f} vs {m['mae_train_mean_baseline']:.2f} for predicting the training mean "
            f"(ratio {m['mae_ratio_to_baseline']:.2f}); RMSE {m['rmse']:.2f}, R2 {m['r2']:.3f}")
  if "mae" in m:
    return f"{where}: MAE {m['mae']:.3f}, RMSE {m.get('rmse', float('nan')):.3f}, R2 {m.get('r2', float('nan')):.3f}"

  def value(k):
    ci = (m.get(f"{k}_ci_low"), m.get(f"{k}_ci_high"))
    ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci)
    return f"{k} {m[k]:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ok else "")

  parts = [value(k) for k in ("accuracy", "micro_f1", "macro_f1", "auroc", "auprc")
           if isinstance(m.get(k), (int, float))]
  k = int(summary.get("num_classes") or len(m.get("per_class") or {}))
  chance = f" (chance 1/{k} = {1 / k:.3f})" if k > 1 and "accuracy" in m else ""
  return f"{where}: " + ", ".join(parts) + chance


if __name__ == "__main__":
  main()
