"""Run a trained model on your own files: images for image runs, echo cines for video runs.

    python -m echojax.predict --workdir workdirs/echosdnet_demo --images FOLDER_OR_FILE [--images MORE ...]
        [--out predictions.csv] [--checkpoint best|latest|auto] [--batch-size 16]
    python -m echojax.predict --workdir workdirs/view_video_resnet3d_demo --videos FOLDER_OR_FILE [...]

One path for both (:func:`predict_files`): the run's ``config.json`` and chosen checkpoint (``Run.load`` +
``run.restore``), then every readable file becomes an in-memory record as the run's prepared data would hold it,
and goes through the run's own eval pipeline (``pipeline.build_loader``, all clips) and ``echojax.evaluate``'s
``Evaluator``, so a file from the test split gets exactly the probabilities ``python -m echojax.evaluate`` wrote.

**Images** (runs with ``config.data.preset="image"``, e.g. EchoSDNet): ``echojax.data.images.read_image``
(PNG/JPG/BMP/TIFF/GIF/WebP, grey, palette, RGBA and 16-bit -> uint8 RGB, EXIF orientation applied), then made
into what the run's dataset builder stores (its ``stored_image``: UNITY a plain resize to 224 x 224, ECG printouts
letterboxed onto white paper). The loader then applies ``data.size`` and the run's scaling
(``data.value_range="unit"``: x / 255; else the prepared data's mean/std), as for a training frame.
Output CSV (default ``<workdir>/predictions/predictions.csv``): ``file, predicted_class, prob_<class>...``, one row
per READABLE image in sorted path order. Files that cannot be read are listed with their reason in the printed
summary and in ``<out stem>.skipped.csv`` beside the CSV; the others are still predicted. A folder is searched
recursively for image suffixes (``IMAGE_SUFFIXES``); a folder with none, or a missing path, is a ``UserError``.

**Videos** (view classification, EF regression / classification): AVI/MP4/MOV/MKV/M4V decoded with OpenCV exactly
as the builders decode; DICOM multi-frame (any transfer syntax pydicom can decode, YBR -> RGB) and GIF as
``echojax.data.ingest`` reads them; resized to the stored frame size of the run's prepared data (read from its
first record; DICOM/GIF cropped to the scan sector first, as ingest + prepare would store them). There is no ECG
beside a file, so ECG-phase samplers fall back to the LV-intensity cycle.
Output CSV: ``file, num_frames, fps`` then, for classification, ``predicted_class, prob_<class>...``; for EF
regression ``prediction`` (EF %); plus per-video model aux columns such as the fusion gate (``gate_0``,
``gate_1``). Unreadable files are skipped and reported as for images. Folders are searched recursively for video,
DICOM and GIF files (and suffix-less files with a DICOM preamble).

**Cross-validation folders** (``--workdir`` a folder of ``python -m echojax.cv``, with ``cv.json``): the fold
ensemble of one row (``--row``, ``--k``) scores the cines (:func:`predict_cv`): per class the folds' mean
probability, its standard deviation and each fold's value. LVAD runs read a cine as the ``lvad`` builder stores
it (its ``stored_video``: the optical-flow motion mask, crop and resize), as every dataset whose builder module
has a ``stored_video`` hook.

Python API: :func:`predict_files`, :func:`predict_cv`, and :func:`predict_images` / :func:`predict_videos`, which also check the run's
kind (all return a :class:`PredictResult`). The same
image probabilities come out of the exported PyTorch model (``python -m echojax.export`` then
``echoforge.load_model(name)``) when it is fed the same [0, 1] NCHW tensor; this CLI is the JAX-side equivalent
that needs no export."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.predict")

# Frame side the builders store (the plain resize done at preparation time), per dataset.
STORED_SIZE = {"unity": 224}
CHUNK = 64  # files decoded and held in memory at a time


@dataclasses.dataclass
class PredictResult:
  """What :func:`predict_images` did: ``rows`` (one dict per readable image, as written to the CSV), ``skipped``
  ((path, reason) per unreadable file), the class names, the CSV path (None when not written) and the checkpoint."""
  rows: list[dict[str, Any]]
  skipped: list[tuple[str, str]]
  class_names: list[str]
  csv_path: Path | None
  checkpoint: str
  step: int

  kind: str = "image"

  def summary(self) -> str:
    if self.step < 0:  # nothing was readable, so no checkpoint was restored
      lines = [f"predicted 0 {self.kind}(s): no file could be read"]
    else:
      lines = [f"predicted {len(self.rows)} {self.kind}(s) with the {self.checkpoint} checkpoint (step {self.step})"]
    if self.rows and self.class_names:
      counts = {c: sum(r["predicted_class"] == c for r in self.rows) for c in self.class_names}
      lines.append("predicted classes: " + ", ".join(f"{c}={n}" for c, n in counts.items()))
    elif self.rows:
      v = np.array([r["prediction"] for r in self.rows], np.float64)
      lines.append(f"predictions: median {np.median(v):.2f}, range {v.min():.2f} to {v.max():.2f}")
    if self.skipped:
      lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
      lines += [f"  {p}: {why}" for p, why in self.skipped]
    if self.csv_path is not None:
      lines.append(f"wrote {self.csv_path}")
    return "\n".join(lines)


def _list_files(paths: str | Path | Sequence[str | Path], flag: str, keep: Callable[[Path], bool],
                looked_for: str) -> tuple[list[Path], list[tuple[str, str]]]:
  """(files, problems) named by ``paths``: a file as given (whatever its suffix), a folder recursively (the files
  ``keep`` accepts), in sorted order. A missing path or a folder with none of them is a problem (path, reason),
  reported with the skipped files while the other paths are still predicted; when no path gives any file it is a
  ``UserError`` naming ``flag``."""
  if isinstance(paths, (str, Path)):
    paths = [paths]
  out: list[Path] = []
  problems: list[tuple[str, str]] = []
  for p in map(Path, paths):
    if p.is_dir():
      found = sorted(f for f in p.rglob("*") if keep(f))
      out += found
      if not found:
        problems.append((str(p), f"the folder has no {looked_for}"))
    elif p.is_file():
      out.append(p)
    else:
      problems.append((str(p), "no such file or folder"))
  if not out:
    raise UserError("; ".join(f"{flag} {p}: {why}" for p, why in problems))
  for p, why in problems:
    log.warning("%s %s: %s", flag, p, why)
  return out, problems


def list_images(paths: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
  """Image files named by ``paths`` (folders searched recursively for image suffixes); see ``_list_files``."""
  from echojax.data.images import IMAGE_SUFFIXES

  return _list_files(paths, "--images", lambda f: f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES,
                     f"image files (looked recursively for {', '.join(IMAGE_SUFFIXES)}); point it at a folder of "
                     "frames or at one image file")


def stored_image_size(config) -> int:
  """The side the run's dataset builder stored still images at (the plain resize done by ``prepare``)."""
  data = config.data
  stored = STORED_SIZE.get(data.name)
  bc = data.builder_config or data.config
  if stored is None and bc is not None and str(bc).isdigit():
    stored = int(bc)
  if stored is None:
    raise UserError(f"cannot tell the stored image size of dataset {data.name!r} (its builder config "
                    f"{bc!r} names none); add it to echojax.predict.STORED_SIZE")
  return int(stored)


def _prepared(config) -> tuple[Any, Path] | None:
  """(first train record, prepared version folder) of the run's data, or None when it cannot be opened here."""
  from echojax.data import pipeline

  try:
    source, version_dir = pipeline.open_source(config.data, config.data.train_split)
  except UserError:
    return None
  return source[0], version_dir


def input_stats(config, feature: str, prepared) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) in [0, 255] units the run's loader normalised with: x / 255 for ``data.value_range="unit"``,
  else the prepared data's ``echojax_stats.json`` (which must then be reachable under ``data.data_dir``)."""
  from echojax.data import options, pipeline

  if options.check_value_range(config.data.value_range) == "unit":
    return options.unit_stats()
  if config.data.norm_stats:  # recorded by the trainer: the workdir carries them
    return pipeline._prepared_stats(config.data, None)
  if prepared is None:
    raise UserError(f"the run normalises with the prepared data's {pipeline.STATS_FILE}, which could not be opened "
                    f"under config.data.data_dir={config.data.data_dir!r}; predict needs the prepared "
                    "data folder the run used")
  return pipeline.load_stats(prepared[1] / pipeline.STATS_FILE, feature)


def skipped_csv(csv_path: Path) -> Path:
  """Where the list of unreadable files goes for the predictions CSV ``csv_path``: ``<stem>.skipped.csv``."""
  return csv_path.with_name(csv_path.stem + ".skipped.csv")


def write_csv(rows: list[dict[str, Any]], skipped: list[tuple[str, str]], cols: list[str], csv_path: Path) -> Path:
  """The predictions CSV (floats with 6 decimals) and, when files were skipped, ``<stem>.skipped.csv`` beside it,
  named after the CSV so other files in the folder are never touched (a stale one of that name is removed)."""
  csv_path.parent.mkdir(parents=True, exist_ok=True)
  with csv_path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
  skipped_path = skipped_csv(csv_path)
  if skipped:
    with skipped_path.open("w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["file", "reason"])
      w.writerows(skipped)
  elif skipped_path.exists():
    skipped_path.unlink()
  return csv_path


def list_videos(paths: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
  """Cine files named by ``paths``: folders are searched recursively for video / DICOM / GIF suffixes and
  suffix-less files with a DICOM preamble, as ``echojax.data.ingest`` looks for them; see ``_list_files``."""
  from echojax.data.ingest import DICOM_SUFFIXES, GIF_SUFFIXES, VIDEO_SUFFIXES, is_candidate

  return _list_files(paths, "--videos", is_candidate,
                     f"cine files (looked recursively for {', '.join(VIDEO_SUFFIXES + DICOM_SUFFIXES + GIF_SUFFIXES)}"
                     " and DICOM files without a suffix); point it at a folder of cines or at one file")


def video_reader(config) -> Callable[[Path, int, str], tuple[np.ndarray, float | None]] | None:
  """``fn(path, stored, crop) -> (frames, fps)`` from the run's dataset builder when it stores cines its own way
  (its module's ``stored_video(path, size, builder_config)``: the LVAD motion mask), else None (the generic
  :func:`read_cine_as_stored`)."""
  import importlib

  from echojax.data.datasets import DATASETS

  info = DATASETS.get(config.data.name)
  fn = getattr(importlib.import_module(info.builder_module), "stored_video", None) if info else None
  if fn is None:
    return None
  return lambda path, stored, crop: fn(path, stored, config.data.builder_config)


def read_cine_as_stored(path: Path, stored: int, crop: str = "sector") -> tuple[np.ndarray, float | None]:
  """(uint8 (T, stored, stored, 3) frames, fps or None) as the run's prepared data would hold this file: container
  videos decoded and resized as the builders do, DICOM / GIF read and squared as ingest does (``crop``: ingest's
  ``--crop``, default its default, the scan sector). Raises ReadError."""
  from echojax.data.ingest import VIDEO_SUFFIXES, ReadError, read_cine, to_square
  from echojax.data.video import VideoReadError, read_video, resize_frames

  if path.suffix.lower() in VIDEO_SUFFIXES:
    if path.stat().st_size == 0:  # listed files exist; OpenCV would only say it cannot open this one
      raise ReadError("file is empty")
    try:
      frames, fps = read_video(path)
    except VideoReadError as e:
      raise ReadError(str(e)) from None
    return resize_frames(frames, stored), (fps if fps > 0 else None)
  cine = read_cine(path)
  return to_square(cine.frames, stored, crop), cine.fps


def predict_files(workdir: str | Path, paths: str | Path | Sequence[str | Path], out: str | Path | None = None,
                  checkpoint: str = "best", batch_size: int | None = None, write: bool = True,
                  kind: str | None = None, crop: str = "sector") -> PredictResult:
  """Predictions for the user's files with the run in ``workdir``: images for image runs, cines for video runs
  (``kind`` "image"/"video" checks that the run is of that kind). One path for both: each readable file becomes
  an in-memory record as the run's prepared data would hold it, then the run's own eval pipeline
  (``pipeline.build_loader``, all clips) and ``echojax.evaluate``'s ``Evaluator``; see the module docstring."""
  from tqdm import tqdm

  from echojax import evaluate
  from echojax import run as run_lib
  from echojax.data import pipeline
  from echojax.data.ingest import ReadError

  workdir = Path(workdir)
  if checkpoint not in ("best", "latest", "auto"):
    raise UserError(f"--checkpoint {checkpoint!r}: use best, latest or auto")
  if batch_size is not None and batch_size < 1:
    raise UserError(f"--batch-size must be >= 1, got {batch_size}")
  run = run_lib.Run.load(workdir)
  config = run.config
  video = config.data.preset != "image"
  if kind == "image" and video:
    raise UserError(f"{workdir / run_lib.CONFIG_FILE}: the run trained on video clips; predict its inputs with "
                    "--videos (--images is for image runs, e.g. echosdnet)")
  if kind == "video" and not video:
    raise UserError(f"{workdir / run_lib.CONFIG_FILE}: the run trained on still images (config.data.preset="
                    "'image'); predict its inputs with --images")
  files, problems = list_videos(paths) if video else list_images(paths)
  recorded = config.data.norm_stats  # stats + stored side, in config.json since the trainer records them
  need_data = not recorded and (video or config.data.value_range != "unit")
  prepared = _prepared(config) if need_data else None
  if need_data and video and prepared is None:
    raise UserError(f"the prepared data of the run (config.data.data_dir={config.data.data_dir!r}) "
                    "could not be opened; predict reads the stored frame size and statistics from it (runs "
                    "trained by this version record them in config.json)")
  feature = "video" if video else "image"
  stats = input_stats(config, feature, prepared)
  if recorded:
    stored = int(recorded["stored_size"])
  else:
    stored = int(prepared[0]["video"].shape[1]) if video else stored_image_size(config)
  task_keys = list(config.data.targets or run.task.target_keys)
  first = prepared[0] if prepared is not None else {}
  dummies = {k: np.zeros_like(np.asarray(first[k])) if k in first else
             (np.int32(0) if k == "label" else np.float32(0)) for k in task_keys}
  data_cfg = run_lib.eval_data_cfg(config, "all")
  if batch_size:  # rounded up to whole batches for this machine's devices, as Run.load does for eval.batch_size
    data_cfg.batch_size = -(-int(batch_size) // run.mesh.size) * run.mesh.size

  read = video_reader(config) if video else image_reader(config.data.name)
  rows: list[dict[str, Any]] = []
  skipped: list[tuple[str, str]] = list(problems)  # paths that gave no file come first
  class_names: list[str] = []
  step, which = -1, checkpoint
  ev = variables = None
  unit = "cine" if video else "img"
  bar = tqdm(total=len(files), desc="predict", unit=unit, disable=len(files) < 2)
  for c0 in range(0, len(files), CHUNK):  # a chunk of decoded files in memory at a time
    records: list[dict[str, Any]] = []
    kept: list[tuple[Path, int, float | None]] = []
    for p in files[c0:c0 + CHUNK]:
      bar.update(1)
      try:
        rec, t, fps = _read_record(p, video, stored, crop, read)
      except ReadError as e:
        skipped.append((str(p), str(e)))
        log.warning("skipped %s: %s", p, e)
        continue
      records.append({**rec, **dummies})
      kept.append((p, t, fps))
    if not records:
      continue
    loader = pipeline.build_loader(records, stats, data_cfg, "predict", train=False, seed=int(config.seed),
                                   process_index=0, process_count=1)
    if ev is None:  # restore once, on the first readable chunk (fixed batch shape: one compile for all chunks)
      x_shape = evaluate.loader_input_shape(loader, config)
      step, which, variables = run.restore(checkpoint, x_shape)
      ev = evaluate.Evaluator(config, run.model, run.task, run.mesh, run.shardings(x_shape))
    ev.loaders["predict"] = loader
    preds, targets, indices, _ = ev.per_video(variables, "predict", "all", name="predict")
    class_names = list(getattr(run.task, "class_names", None) or []) if "probs" in preds else []
    cols = {k: v for k, v in run.task.csv_columns(preds, targets).items() if k != "target" and k not in task_keys}
    cols.update(evaluate.aux_columns(preds))
    for j, i in enumerate(indices):
      p, t, fps = kept[int(i)]
      row: dict[str, Any] = {"file": str(p)}
      if video:
        row.update(num_frames=t, fps=round(fps, 3) if fps else "")
      for k, v in cols.items():
        if k == "prediction" and class_names:
          row["predicted_class"] = class_names[int(v[j])]
        else:
          row[k] = float(v[j])
      rows.append(row)
  bar.close()
  if ev is None:
    log.warning("none of the %d file(s) could be read; nothing to predict", len(files))
  csv_path = None
  if write:
    header = list(rows[0]) if rows else ["file"] + (["num_frames", "fps"] if video else [])
    csv_path = write_csv(rows, skipped, header, Path(out) if out else workdir / "predictions" / "predictions.csv")
  return PredictResult(rows, skipped, class_names, csv_path, which, step, kind="video" if video else "image")


def predict_cv(cv_dir: str | Path, paths, out: str | Path | None = None, row: str | None = None,
               k: int | None = None, write: bool = True, crop: str = "sector") -> PredictResult:
  """Predictions of a cross-validation's fold ensemble (``python -m echojax.cv`` wrote ``<cv_dir>/cv.json``): every
  fold of ``row`` (default the first row) at ``k`` folds (default 5 when run, else the largest K), first seed,
  scores the files with its last checkpoint through :func:`predict_files`; each ``prob_<class>`` column becomes
  the folds' mean, with ``prob_<class>_std`` (their spread) and ``prob_<class>_fold<i>`` beside it, and the
  predicted class is the mean's argmax."""
  import json

  cv_dir = Path(cv_dir)
  manifest = json.loads((cv_dir / "cv.json").read_text())
  jobs = [j for j in manifest["jobs"] if j["row"] != "nested" and not j["row"].startswith("nested-")]
  rows = list(dict.fromkeys(j["row"] for j in jobs))
  row = row or (rows[0] if rows else None)
  mine = [j for j in jobs if j["row"] == row]
  if not mine:
    raise UserError(f"{cv_dir / 'cv.json'}: no folds of row {row!r}; rows: {', '.join(rows)} (--row)")
  ks = sorted({int(j["k"]) for j in mine})
  k = int(k) if k else (5 if 5 in ks else ks[-1])
  if k not in ks:
    raise UserError(f"{cv_dir / 'cv.json'}: row {row} was run with K = {', '.join(map(str, ks))}, not {k} (--k)")
  seed = min(int(j["seed"]) for j in mine if int(j["k"]) == k)
  folds = sorted((j for j in mine if int(j["k"]) == k and int(j["seed"]) == seed), key=lambda j: j["fold"])
  results = [predict_files(j["workdir"], paths, checkpoint="latest", write=False, kind="video", crop=crop)
             for j in folds]
  first = results[0]
  by_file = [{r["file"]: r for r in res.rows} for res in results]
  prob_cols = [c for c in (first.rows[0] if first.rows else {}) if c.startswith("prob_")]
  rows_out = []
  for r in first.rows:
    mine_rows = [b[r["file"]] for b in by_file]
    row_out = {key: r[key] for key in ("file", "num_frames", "fps") if key in r}
    means = []
    for c in prob_cols:
      v = np.array([m[c] for m in mine_rows])
      means.append(float(v.mean()))
      row_out[c] = round(float(v.mean()), 6)
      row_out[f"{c}_std"] = round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 6)
    if first.class_names:
      row_out["predicted_class"] = first.class_names[int(np.argmax(means))]
    last = prob_cols[-1] if prob_cols else None
    for j, m in zip(folds, mine_rows):
      if last:
        row_out[f"{last}_fold{j['fold']}"] = round(float(m[last]), 6)
    rows_out.append(row_out)
  csv_path = None
  if write:
    header = list(rows_out[0]) if rows_out else ["file", "num_frames", "fps"]
    csv_path = write_csv(rows_out, first.skipped, header,
                         Path(out) if out else cv_dir / "predictions" / f"{row}_k{k}_predictions.csv")
  return PredictResult(rows_out, first.skipped, first.class_names, csv_path,
                       f"latest of {len(folds)} folds ({row}, K={k}, seed {seed})", first.step, kind="video")


def image_reader(dataset: str) -> Callable[[Path, int], np.ndarray]:
  """``fn(path, size) -> uint8 (S, S, 3)``: a file as ``dataset``'s builder stores it (its module's
  ``stored_image``: a plain resize for UNITY, a letterbox on white paper for ECG printouts); a plain resize for
  datasets whose builder has none."""
  import importlib

  from echojax.data.datasets import DATASETS
  from echojax.data.images import read_image, resize_image

  info = DATASETS.get(dataset)
  fn = getattr(importlib.import_module(info.builder_module), "stored_image", None) if info else None
  return fn or (lambda path, size: resize_image(read_image(path), size))


def _read_record(path: Path, video: bool, stored: int, crop: str = "sector",
                 read: Callable | None = None) -> tuple[dict[str, Any], int, float | None]:
  """(record as the prepared data holds this file, frame count, fps or None). Raises ReadError. ``read``: the
  dataset's image reader (:func:`image_reader`) for images; for cines its :func:`video_reader` or None."""
  from echojax.data.images import ImageReadError
  from echojax.data.ingest import ReadError

  if video:
    frames, fps = (read or read_cine_as_stored)(path, stored, crop)
    rec: dict[str, Any] = {"video": frames, "num_frames": np.int32(len(frames))}
    if fps:
      rec["fps"] = np.float32(fps)
    return rec, len(frames), fps
  try:
    return {"image": read(path, stored)}, 1, None  # as the run's dataset builder stores a file
  except ImageReadError as e:
    raise ReadError(str(e)) from None


def predict_images(workdir, images, out=None, checkpoint: str = "best", batch_size: int = 16,
                   write: bool = True) -> PredictResult:
  """:func:`predict_files` for an image run (EchoSDNet): class probabilities per image."""
  return predict_files(workdir, images, out, checkpoint, batch_size, write, kind="image")


def predict_videos(workdir, videos, out=None, checkpoint: str = "best", write: bool = True,
                   crop: str = "sector") -> PredictResult:
  """:func:`predict_files` for a video run (views, EF): per-cine predictions, all clips averaged."""
  return predict_files(workdir, videos, out, checkpoint, None, write, kind="video", crop=crop)


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m echojax.predict", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="training run folder (holds config.json and checkpoints/), or "
                 "a cross-validation folder of python -m echojax.cv (holds cv.json): its fold ensemble predicts")
  p.add_argument("--row", default=None, help="cross-validation folder: the row whose folds predict (default first)")
  p.add_argument("--k", type=int, default=None, help="cross-validation folder: which K (default 5, else the largest)")
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--images", nargs="+", help="image file(s) and/or folder(s) (searched recursively); image runs")
  what.add_argument("--videos", nargs="+",
                    help="cine file(s) and/or folder(s): AVI/MP4/MOV/MKV, DICOM multi-frame, GIF; video runs")
  p.add_argument("--out", default=None, help="CSV path (default <workdir>/predictions/predictions.csv)")
  p.add_argument("--checkpoint", default="best", choices=["best", "latest", "auto"],
                 help="best (falls back to latest when no validation ran), latest, or auto")
  p.add_argument("--crop", choices=("sector", "center", "none"), default="sector",
                 help="DICOM/GIF cines: square them as ingest --crop did for the run's data (default sector)")
  p.add_argument("--batch-size", type=int, default=16,
                 help="images per forward pass (fixed shape); videos use the run's eval.batch_size")
  return p.parse_args(list(argv))


@cli_main
def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("echojax").setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's read-only-manager notices are not the user's concern
  a = parse_args(sys.argv[1:] if argv is None else argv)
  if (Path(a.workdir) / "cv.json").is_file() and not (Path(a.workdir) / "config.json").is_file():
    if not a.videos:
      raise UserError(f"{a.workdir} is a cross-validation of a video run; predict cines with --videos")
    result = predict_cv(a.workdir, a.videos, a.out, a.row, a.k, crop=a.crop)
  elif a.videos:
    result = predict_videos(a.workdir, a.videos, a.out, a.checkpoint, crop=a.crop)
  else:
    result = predict_images(a.workdir, a.images, a.out, a.checkpoint, a.batch_size)
  print(result.summary())  # the rows are in the CSV it names
  if not result.rows:
    raise UserError(f"none of the {len(result.skipped)} input(s) could be read (reasons above"
                    + (f" and in {skipped_csv(result.csv_path)}" if result.csv_path else "") + ")")


if __name__ == "__main__":
  main()
