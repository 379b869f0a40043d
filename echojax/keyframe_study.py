"""The key-frame LVEF study (seed 004) by one command: features, MLP heads, Gaussian process, ensembles, tables.

    python -m echojax.keyframe_study --config keyframe_lvef:demo           # phantoms, CPU minutes
    python -m echojax.keyframe_study --config keyframe_lvef:data_dir=PREPARED,weights=resnet50.pth
    python -m echojax.keyframe_study --config keyframe_lvef:demo --collect # tables again from finished runs

Steps (each resumes: a finished step is kept, nothing is overwritten):

1. ``echojax.features.extract`` of the config's ``get_study(arg)["features"]`` into ``OUT/features`` (ED, ES and
   mid frames of every split; ``features.json`` says which backbone and weights).
2. For each frame and head (``cls``: EF < 40, ``reg``: EF) an MLP run of ``get_config(f"{arg},head=H,frame=F")``
   through ``echojax.train`` in ``OUT/runs/<head>_<frame>`` (its best checkpoint by validation).
3. A Gaussian process per frame (``echojax.gp.GPRegressor``: kernel and hyperparameters fit on train only).
4. Ensembles: the regression models (MLP and GP of each frame) and the classifiers of each frame, averaged with
   weights chosen on VALIDATION (inverse validation MSE; inverse validation log-loss); plain means beside them.
5. Tables with bootstrap CIs on test: ``frames.csv/.md`` (Frame x Accuracy, F1, AUC), ``models.csv/.md`` (Model x
   MAE, RMSE, R2), ``gp_calibration.csv/.md`` (coverage of the 68% / 95% intervals, MAE as the most uncertain cases
   are referred); plots (residuals, Bland-Altman, GP calibration and referral); ``predictions_test.csv``;
   ``study.json`` (everything, plus the ensemble weights).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from echojax import config as config_lib
from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.keyframe_study")

FRAME_NAMES = {"ed": "EDF", "es": "ESF", "mid": "MF"}
EPS = 1e-7


def load_study(spec: str) -> tuple[Any, str | None, dict]:
  name, arg = config_lib.split_spec(spec)
  module = config_lib._load_module(name)
  if not hasattr(module, "get_study"):
    raise UserError(f"config {name} has no get_study(arg): it does not describe a key-frame study")
  return module, arg, module.get_study(arg)


def run_spec(spec: str, head: str, frame: str) -> str:
  name, arg = config_lib.split_spec(spec)
  return f"{name}:{','.join(x for x in (arg, f'head={head}', f'frame={frame}') if x)}"


def predict_run(workdir: Path, x: np.ndarray) -> np.ndarray:
  """The run's best checkpoint on feature rows ``x``: P(class 1) for a classifier, the EF for a regressor."""
  import jax

  from echojax import run as run_lib

  run = run_lib.Run.load(workdir)
  _, _, variables = run.restore("best")
  fwd = jax.jit(run_lib.eval_forward(run.model, run.config))
  out = run.task.decode(fwd(variables, {"features": x.astype(np.float32)})[0])
  return np.asarray(out["probs"][:, 1] if "probs" in out else out[run.task.key], np.float64)


def ensemble_weights(val_losses: dict[str, float]) -> dict[str, float]:
  inv = {k: 1.0 / max(v, EPS) for k, v in val_losses.items()}
  s = sum(inv.values())
  return {k: v / s for k, v in inv.items()}


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
  p = np.clip(p, EPS, 1 - EPS)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _ci(m: dict, key: str) -> str:
  lo, hi = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
  v = m.get(key)
  if v is None or not np.isfinite(v):
    return "n/a"
  return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and np.isfinite(lo) else "")


def write_table(rows: list[dict], columns: list[str], stem: Path, title: str) -> None:
  with stem.with_suffix(".csv").open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def run_study(spec: str, overrides: dict | None = None, *, out: str | Path | None = None,
              bootstrap: int | None = None, collect: bool = False) -> dict[str, Path]:
  from echojax import features as feats_lib
  from echojax import gp as gp_lib
  from echojax import metrics as M
  from echojax import plots as P
  from echojax import plots_uncertainty as PU
  from echojax import train
  from echojax.data.features import read_features

  overrides = dict(overrides or {})
  _, _, study = load_study(spec)
  out = Path(out or study["out"])
  boot = int(study["bootstrap"] if bootstrap is None else bootstrap)
  fdir = out / "features"
  f = study["features"]
  if not collect:
    feats_lib.extract(fdir, feats_lib.Settings(data=f["data"], backbone=f["backbone"],
                                               backbone_kwargs=f["backbone_kwargs"], weights=f["weights"],
                                               size=f["size"], norm=f["norm"], shard_size=f["shard_size"]))
  data = {s: read_features(fdir, s) for s in ("train", "val", "test")}
  frames = list(study["frames"])
  info = json.loads((fdir / "features.json").read_text())
  x = {s: {fr: d["features"][:, info["frames"].index(fr)] for fr in frames} for s, d in data.items()}
  y = {s: d["ef"].astype(np.float64) for s, d in data.items()}
  threshold = float(config_lib.load_config(run_spec(spec, "cls", frames[0]), overrides).task.threshold)
  cls_y = {s: (v < threshold).astype(int) for s, v in y.items()}

  preds: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}  # "<model>:<frame>" -> values
  stds: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}
  for head in study["heads"]:
    for fr in frames:
      wd = out / "runs" / f"{head}_{fr}"
      if not collect:
        train.train(config_lib.load_config(run_spec(spec, head, fr),
                                           {**overrides, "data.data_dir": str(fdir)}), wd)
      for s in ("val", "test"):
        preds[s][f"{head}:{fr}"] = predict_run(wd, x[s][fr])
  gp_settings = dict(study["gp"])
  for fr in frames:
    gdir = out / "gp" / fr
    if (gdir / "gp.json").is_file():
      model = gp_lib.GPRegressor.load(gdir)
    else:
      if collect:
        raise UserError(f"--collect: {gdir} has no fitted GP; run without --collect first")
      model = gp_lib.GPRegressor(**gp_settings).fit(x["train"][fr], y["train"], seed=0)
      model.save(gdir)
    for s in ("val", "test"):
      preds[s][f"gp:{fr}"], stds[s][f"gp:{fr}"] = model.predict(x[s][fr])

  # ensembles, weights from validation only
  reg_keys = [k for k in preds["val"] if not k.startswith("cls:")]
  cls_keys = [k for k in preds["val"] if k.startswith("cls:")]
  w_reg = ensemble_weights({k: float(np.mean((preds["val"][k] - y["val"]) ** 2)) for k in reg_keys})
  w_cls = ensemble_weights({k: log_loss(cls_y["val"], preds["val"][k]) for k in cls_keys}) if cls_keys else {}
  for s in ("val", "test"):
    if reg_keys:
      preds[s]["ensemble"] = sum(w_reg[k] * preds[s][k] for k in reg_keys)
      preds[s]["mean"] = np.mean([preds[s][k] for k in reg_keys], axis=0)
    if cls_keys:
      preds[s]["cls:ensemble"] = sum(w_cls[k] * preds[s][k] for k in cls_keys)

  # tables on test
  tables = out / "tables"
  tables.mkdir(parents=True, exist_ok=True)
  plots = out / "plots"
  plots.mkdir(parents=True, exist_ok=True)
  results: dict[str, Any] = {"spec": spec, "features": info["backbone"], "threshold": threshold,
                             "n": {s: int(len(v)) for s, v in y.items()}, "weights": {"reg": w_reg, "cls": w_cls},
                             "classification": {}, "regression": {}, "calibration": {}}
  rows = []
  for k in [k for k in preds["test"] if k.startswith("cls:")]:
    fr = k.split(":")[1]
    m = M.binary_metrics(cls_y["test"], preds["test"][k], bootstrap=boot)
    acc, f1 = _boot_acc_f1(cls_y["test"], preds["test"][k] >= 0.5, boot)
    results["classification"][k] = {**m, **acc, **f1}
    rows.append({"Frame": FRAME_NAMES.get(fr, "Ensemble (val-weighted)" if fr == "ensemble" else fr), "Accuracy": _ci({**acc}, "accuracy"),
                 "F1": _ci({**f1}, "f1"), "AUC": _ci(m, "auroc"), "n": m["n"]})
  write_table(rows, ["Frame", "Accuracy", "F1", "AUC", "n"], tables / "frames",
              f"Reduced EF (< {threshold:g}%) by frame, test, 95% bootstrap CIs")
  rows = []
  for k in [k for k in preds["test"] if not k.startswith("cls:")]:
    m = M.regression_metrics(y["test"], preds["test"][k], bootstrap=boot)
    results["regression"][k] = m
    rows.append({"Model": _model_name(k), "MAE": _ci(m, "mae"), "RMSE": _ci(m, "rmse"), "R2": _ci(m, "r2"),
                 "n": m["n"]})
    safe = k.replace(":", "_")
    PU.plot_residuals(y["test"], preds["test"][k], plots / f"residuals_{safe}.png", std=stds["test"].get(k))
    P.plot_bland_altman(y["test"], preds["test"][k], plots / f"bland_altman_{safe}.png",
                        title=f"Bland-Altman: {_model_name(k)}")
  write_table(rows, ["Model", "MAE", "RMSE", "R2", "n"], tables / "models",
              "EF regression, test, 95% bootstrap CIs")
  rows, curves = [], {}
  for k, sd in stds["test"].items():
    cov = M.interval_coverage(y["test"], preds["test"][k], sd)
    ref = M.referral_curve(y["test"], preds["test"][k], sd)
    results["calibration"][k] = {"coverage": cov, "referral": ref}
    curves[_model_name(k)] = ref
    rows.append({"Model": _model_name(k), "coverage 68%": f"{cov['coverage_68']:.3f}",
                 "coverage 95%": f"{cov['coverage_95']:.3f}", "mean std": f"{cov['mean_std']:.2f}",
                 **_referral_cells(ref)})
    PU.plot_calibration(y["test"], preds["test"][k], sd, plots / f"calibration_{k.replace(':', '_')}.png")
  cal_cols = ["Model", "coverage 68%", "coverage 95%", "mean std"] + list(_referral_cells(ref).keys()) if rows else []
  write_table(rows, cal_cols, tables / "gp_calibration", "GP calibration on test: interval coverage; MAE of the "
              "cases kept when the most uncertain fraction is referred")
  if curves:
    PU.plot_referral(curves, plots / "referral.png")
  _write_predictions(out / "predictions_test.csv", data["test"], y["test"], preds["test"], stds["test"])
  (out / "study.json").write_text(json.dumps(M.json_safe(results), indent=1, sort_keys=True))
  return {"frames": tables / "frames.md", "models": tables / "models.md", "calibration": tables / "gp_calibration.md",
          "json": out / "study.json", "predictions": out / "predictions_test.csv", "plots": plots}


def _boot_acc_f1(y: np.ndarray, yhat: np.ndarray, boot: int) -> tuple[dict, dict]:
  """Accuracy and F1 with percentile-bootstrap CIs (binary_metrics bootstraps AUROC/AUPRC only)."""
  from sklearn.metrics import f1_score

  y, yhat = np.asarray(y, int), np.asarray(yhat, int)
  rng = np.random.default_rng(0)
  accs, f1s = [], []
  for _ in range(boot):
    i = rng.integers(0, len(y), len(y))
    accs.append(np.mean(y[i] == yhat[i]))
    f1s.append(f1_score(y[i], yhat[i], zero_division=0))
  acc, f1 = float(np.mean(y == yhat)), float(f1_score(y, yhat, zero_division=0))
  q = lambda v: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (np.nan, np.nan)  # noqa: E731
  a, b = q(accs), q(f1s)
  return ({"accuracy": acc, "accuracy_ci_low": a[0], "accuracy_ci_high": a[1]},
          {"f1": f1, "f1_ci_low": b[0], "f1_ci_high": b[1]})


def _model_name(k: str) -> str:
  if ":" not in k:
    return {"ensemble": "Ensemble (val-weighted)", "mean": "Ensemble (mean)"}.get(k, k)
  model, fr = k.split(":")
  return f"{ {'reg': 'MLP', 'gp': 'GPR'}.get(model, model)} ({FRAME_NAMES.get(fr, fr)})"


def _referral_cells(ref: dict) -> dict:
  return {f"MAE kept @{int(round(float(fr) * 100))}% referred": f"{v['mae_kept']:.2f}"
          for fr, v in zip(ref["fractions"], ref["curve"])}


def _write_predictions(path: Path, data: dict, y: np.ndarray, preds: dict, stds: dict) -> None:
  cols = sorted(preds)
  with path.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file_name", "index", "ef", "key_frame_source"] + cols + [f"{k}_std" for k in sorted(stds)])
    for i in range(len(y)):
      w.writerow([data["file_name"][i], int(data["index"][i]), f"{y[i]:.4g}", data["frame_source"][i]]
                 + [f"{preds[k][i]:.5g}" for k in cols] + [f"{stds[k][i]:.5g}" for k in sorted(stds)])


# ----------------------------------------------------------------------------------------------------------------
# A finished study on a user's cines, and its export


def _study_backbone(study_out: Path):
  """(settings, model, variables, data config of the first frame, stats, stored side) of a study's features,
  the backbone rebuilt and checked against the sha256 features.json recorded."""
  import jax

  from echojax import features as feats_lib
  from echojax.data.features import manifest
  from echojax.data.options import unit_stats
  from echojax.data.pipeline import _prepared_stats
  from echojax.data.sources import open_source

  info = manifest(study_out / "features")
  doc = dict(info["settings"])
  doc["frames"] = tuple(doc["frames"])
  s = feats_lib.Settings(**doc)
  model, variables, extra = feats_lib.build_backbone(s)[:3]
  if feats_lib.variables_sha256(jax.device_get(variables)) != info["backbone"]["variables_sha256"]:
    raise UserError(f"the backbone rebuilt from {study_out}/features/features.json differs from the one that made "
                    "the features (variables sha256); was the weights file or workdir changed?")
  cfg = feats_lib._data_cfg(s, extra, s.frames[0], 16)
  source, version_dir = open_source(cfg, "train")
  stats = unit_stats() if cfg.get("value_range") == "unit" else _prepared_stats(cfg, version_dir)
  return s, model, variables, extra, stats, int(np.asarray(source[0]["video"]).shape[1])


def predict_cines(study_out: str | Path, paths, out: str | Path | None = None) -> Path:
  """EF (val-weighted ensemble), its GP standard deviation, P(reduced EF) and the key frames used for each cine:
  key frames found automatically (``key_frames``: no tracings, so estimated from the intensity cycle), a PNG strip
  of them per file, and a CSV (``out``, default ``<study>/predict/predictions.csv``)."""
  import jax

  from echojax import features as feats_lib
  from echojax import gp as gp_lib
  from echojax import predict as predict_lib
  from echojax.data.ingest import ReadError
  from echojax.data.keyframes import key_frames
  from echojax.data.pipeline import build_loader
  from echojax.models import layers

  study_out = Path(study_out)
  doc = json.loads((study_out / "study.json").read_text()) if (study_out / "study.json").is_file() else None
  if doc is None:
    raise UserError(f"{study_out} has no study.json: run python -m echojax.keyframe_study first")
  s, model, variables, extra, stats, stored = _study_backbone(study_out)
  files, skipped = predict_lib.list_videos(paths)
  records, kfs, ok = [], [], []
  for p in files:
    try:
      rec = predict_lib._read_record(Path(p), True, stored)[0]
    except ReadError as e:
      skipped.append((str(p), str(e)))
      continue
    records.append(rec)
    kfs.append(key_frames(rec))
    ok.append(Path(p))
  if not records:
    raise UserError(f"no readable cine among {len(files)} files ({skipped[:3]})")
  fwd = layers.jit(lambda v, x: model.apply(v, x, train=False)[1]["features"])
  feats = {}
  for fr in s.frames:
    loader = build_loader(records, stats, feats_lib._data_cfg(s, extra, fr, 8), "predict", train=False, seed=0,
                          process_index=0, process_count=1)
    rows = np.zeros((len(records), 0))
    for b in loader:
      x = b["image"]
      if s.norm == "imagenet":
        x = (x - np.asarray(feats_lib.IMAGENET_MEAN, np.float32)) / np.asarray(feats_lib.IMAGENET_STD, np.float32)
      f = np.asarray(fwd(jax.device_get(variables), x))
      if rows.shape[1] == 0:
        rows = np.zeros((len(records), f.shape[1]), np.float32)
      rows[b["index"][b["valid"]]] = f[b["valid"]]
    feats[fr] = rows
  preds, stds = {}, {}
  for k in doc["weights"]["reg"]:
    model_kind, fr = k.split(":")
    if model_kind == "gp":
      preds[k], stds[k] = gp_lib.GPRegressor.load(study_out / "gp" / fr).predict(feats[fr])
    else:
      preds[k] = predict_run(study_out / "runs" / f"reg_{fr}", feats[fr])
  for k in doc["weights"]["cls"]:
    preds[k] = predict_run(study_out / "runs" / f"cls_{k.split(':')[1]}", feats[k.split(":")[1]])
  ef = sum(w * preds[k] for k, w in doc["weights"]["reg"].items())
  p_red = sum(w * preds[k] for k, w in doc["weights"]["cls"].items()) if doc["weights"]["cls"] else None
  best_gp = min(stds, key=lambda k: doc["regression"][k]["mae"]) if stds else None  # lowest test MAE: reported
  out = Path(out) if out else study_out / "predict" / "predictions.csv"
  out.parent.mkdir(parents=True, exist_ok=True)
  rows_out = []
  for i, p in enumerate(ok):
    strip = _key_frame_strip(records[i]["video"], kfs[i], out.parent / f"{p.stem}_keyframes.png")
    row = {"file": str(p), "num_frames": int(records[i]["num_frames"]), "key_frame_source": kfs[i].source,
           **{f"{fr}_frame": kfs[i].index(fr) for fr in s.frames}, "ef": round(float(ef[i]), 2)}
    if best_gp:
      row.update({"ef_std": round(float(stds[best_gp][i]), 2), "ef_std_from": best_gp})
    if p_red is not None:
      row.update({"p_reduced": round(float(p_red[i]), 4),
                  "class": f"EF<{doc['threshold']:g}" if p_red[i] >= 0.5 else f"EF>={doc['threshold']:g}"})
    row.update({k.replace(":", "_"): round(float(v[i]), 4) for k, v in sorted(preds.items())})
    row["frames_png"] = str(strip)
    rows_out.append(row)
  cols = list(rows_out[0])
  predict_lib.write_csv(rows_out, skipped, cols, out)
  return out


def _key_frame_strip(video: np.ndarray, kf, path: Path) -> Path:
  from echojax.plots import _figure, _save

  fig = _figure((9, 3.4), 100)
  axes = fig.subplots(1, 3)
  for ax, fr in zip(axes, ("ed", "es", "mid")):
    ax.imshow(np.asarray(video[kf.index(fr)]))
    ax.set_title(f"{FRAME_NAMES[fr]}: frame {kf.index(fr)}")
    ax.axis("off")
  fig.suptitle(f"key frames ({'estimated from ' + kf.source if kf.estimated else 'tracings'})")
  return _save(fig, path)


def export_heads(study_out: str | Path, *, registry: str | Path | None = None, prefix: str = "keyframe_lvef"
                 ) -> list[Path]:
  """Each MLP head with the backbone that made its features, as one image -> output echoforge model
  ``<prefix>_<head>_<frame>`` (the export's parity check applies: <= 1e-4)."""
  from echojax import export as export_lib
  from echojax import features as feats_lib
  from echojax import run as run_lib
  from echojax.models.mlp import with_backbone

  study_out = Path(study_out)
  s, _, bvars, _, stats, stored = _study_backbone(study_out)
  if s.workdir:
    raise UserError("exporting heads whose features came from --workdir is not supported yet; export a study "
                    "whose backbone is a zoo model (+ --weights)")
  side = s.size or stored
  norm = ({"mean": list(feats_lib.IMAGENET_MEAN), "std": list(feats_lib.IMAGENET_STD), "units": "[0, 1]"}
          if s.norm == "imagenet" else {"mean": [float(v) for v in np.ravel(stats[0])],
                                          "std": [float(v) for v in np.ravel(stats[1])], "units": "[0, 255]"})
  written = []
  for wd in sorted((study_out / "runs").iterdir()):
    run = run_lib.Run.load(wd)
    _, which, mvars = run.restore("best")
    kwargs = {**run.config.model.kwargs.to_dict(), "num_classes": run.task.num_outputs, "backbone": s.backbone,
              "backbone_kwargs": dict(s.backbone_kwargs)}
    spec = export_lib.input_spec("feature_mlp", kwargs, size=(side, side), normalisation=norm,
                                 value_range=(0.0, 1.0) if s.norm == "imagenet" else (0.0, 255.0))
    cls = run.config.task.kind == "ef_classification"
    written.append(export_lib.export_variables(
        with_backbone(mvars, bvars), f"{prefix}_{wd.name}", "feature_mlp", kwargs, registry=registry,
        class_names=run.task.class_names if cls and hasattr(run.task, "class_names") else None, input=spec,
        source={"workdir": str(wd), "checkpoint": which, "features": str(study_out / "features")}))
  return written


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog="python -m echojax.keyframe_study", description=__doc__.split("\n\n")[0])
  p.add_argument("--config", required=True, help="NAME[:ARG], e.g. keyframe_lvef:demo")
  p.add_argument("--out", default=None, help="study folder (default: the config's, workdirs/keyframe_lvef_*)")
  p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for the CIs")
  p.add_argument("--collect", action="store_true", help="tables from finished runs only (trains nothing)")
  p.add_argument("--predict", nargs="+", default=None, metavar="CINE", help="score cines with the finished study")
  p.add_argument("--predict-out", default=None, help="CSV for --predict (default <study>/predict/predictions.csv)")
  p.add_argument("--export", action="store_true", help="export every MLP head with its backbone to echoforge")
  p.add_argument("--registry", default=None, help="echoforge registry for --export")
  return p.parse_known_args(argv)


@cli_main
def main(argv=None) -> None:
  from echojax import run as run_lib

  run_lib.setup_logging()
  run_lib.enable_compilation_cache()
  a, rest = parse_args(argv)
  overrides = {}
  for r in rest:
    if not r.startswith("--config.") or "=" not in r:
      raise UserError(f"unknown argument {r!r}; config overrides are --config.a.b=value")
    k, v = r[len("--config."):].split("=", 1)
    overrides[k] = v
  out = Path(a.out or load_study(a.config)[2]["out"])
  if a.predict or a.export:
    if a.predict:
      csv_path = predict_cines(out, a.predict, a.predict_out)
      print(csv_path.read_text())
      print(f"[keyframe_study] {csv_path} (key-frame strips beside it)")
    for path in (export_heads(out, registry=a.registry) if a.export else []):
      print(f"[keyframe_study] exported {path}")
    return
  paths = run_study(a.config, overrides, out=out, bootstrap=a.bootstrap, collect=a.collect)
  for k in ("frames", "models", "calibration"):
    print(paths[k].read_text())
  print(f"[keyframe_study] {paths['json']}, {paths['predictions']}, plots in {paths['plots']}")


if __name__ == "__main__":
  main()
