"""Run a trained model on your own files: images for image runs, echo cines for video runs.

    python -m echojax.predict --workdir workdirs/echosdnet_demo --images FOLDER_OR_FILE [--images MORE ...]
        [--out predictions.csv] [--checkpoint best|latest|auto] [--batch-size 16]
    python -m echojax.predict --workdir workdirs/view_video_r3d_demo --videos FOLDER_OR_FILE [...]

**Images** (runs with ``config.data.preset="image"``, e.g. EchoSDNet). Reads the run's ``config.json`` and the
chosen checkpoint (``params``/``batch_stats`` only, as numpy: any device count), then, for every image:

1. ``echojax.data.images.read_image``: PNG/JPG/BMP/TIFF/GIF/WebP, grey, palette, RGBA and 16-bit -> uint8 RGB;
2. the builder's plain resize to its stored size (``resize_image``; UNITY stores 224 x 224), then the pipeline's
   ``data.size`` resize when the run trained on smaller frames (the same INTER_AREA resize the loader applies), so
   an 800 x 600 or 1024 x 768 export reaches the model exactly as a training frame did;
3. the run's input scaling: ``data.value_range="unit"`` (EchoSDNet) -> x / 255 in [0, 1]; ``"dataset"`` (the
   default for runs without the field) -> (x - mean) / std with the prepared data's ``echojax_stats.json``;
4. the model in eval mode, then the task's softmax.

Output CSV (default ``<workdir>/predictions/predictions.csv``): ``file, predicted_class, prob_<class>...`` with one
row per READABLE image, in sorted path order. Files that cannot be read are not rows: each is listed with its
reason in the printed summary and in ``skipped.csv`` beside the CSV, and the other images are still predicted. A
folder is searched recursively for files with an image suffix (``IMAGE_SUFFIXES``); a folder with none is a
``UserError``, as is a path that does not exist.

**Videos** (video runs: view classification, EF regression / classification). Every cine goes the way a prepared
record of the run's dataset went, then through ``echojax.evaluate``'s own ``Evaluator`` with all clips averaged:

1. decoding: AVI/MP4/MOV/MKV/M4V with OpenCV, exactly as the builders decode; DICOM multi-frame (any transfer
   syntax pydicom can decode, YBR -> RGB) and GIF as ``echojax.data.ingest`` reads them;
2. the stored frame size of the run's prepared data (read from its first record): container videos get the
   builders' plain resize, DICOM/GIF the ingest centre-crop to a square first (what ingest + prepare would store);
3. the run's eval pipeline (``data.size`` resize, normalisation with the prepared data's statistics, clips with
   ``clips="all"``; ECG-phase samplers fall back to the LV-intensity cycle, as there is no ECG beside a file).

Output CSV: ``file, num_frames, fps`` then, for classification, ``predicted_class, prob_<class>...``; for EF
regression ``prediction`` (EF %); plus per-video model aux columns such as the fusion gate (``gate_0``,
``gate_1``). Unreadable files are skipped and reported as for images. Folders are searched recursively for video,
DICOM and GIF files (and suffix-less files with a DICOM preamble).

Python API: :func:`predict_images` and :func:`predict_videos` (both return a :class:`PredictResult`). The same
image probabilities come out of the exported PyTorch model (``python -m echojax.export`` then
``echoforge.load_model(name)``) when it is fed the same [0, 1] NCHW tensor; this CLI is the JAX-side equivalent
that needs no export."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.predict")

# Frame side the builders store (the plain resize done at preparation time), per dataset.
STORED_SIZE = {"unity": 224}
_FORWARD: dict[str, Any] = {}  # config.json text -> jitted model + softmax
VIDEO_CHUNK = 64  # cines decoded and held in memory at a time by predict_videos


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
                looked_for: str) -> list[Path]:
  """Files named by ``paths``: a file as given (whatever its suffix), a folder recursively (the files ``keep``
  accepts), in sorted order. Missing paths and folders with none of them raise ``UserError`` naming ``flag``."""
  if isinstance(paths, (str, Path)):
    paths = [paths]
  out: list[Path] = []
  for p in map(Path, paths):
    if p.is_dir():
      found = sorted(f for f in p.rglob("*") if keep(f))
      if not found:
        raise UserError(f"{flag} {p}: the folder has no {looked_for}")
      out += found
    elif p.is_file():
      out.append(p)
    else:
      raise UserError(f"{flag} {p}: no such file or folder")
  return out


def list_images(paths: str | Path | Sequence[str | Path]) -> list[Path]:
  """Image files named by ``paths`` (folders searched recursively for image suffixes); see ``_list_files``."""
  from echojax.data.images import IMAGE_SUFFIXES

  return _list_files(paths, "--images", lambda f: f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES,
                     f"image files (looked recursively for {', '.join(IMAGE_SUFFIXES)}); point it at a folder of "
                     "frames or at one image file")


def input_size(config) -> tuple[int, int | None]:
  """(stored side the builder resized to, pipeline ``data.size`` or None) for the run's dataset."""
  data = config.data
  name = data.get("name", None)
  stored = STORED_SIZE.get(name)
  if stored is None:
    bc = data.get("builder_config", None) or data.get("config", None)
    if bc is not None and str(bc).isdigit():
      stored = int(bc)
  size = data.get("size", None)
  if stored is None and not size:
    raise UserError(f"cannot tell the input size of dataset {name!r} (config.data.size is empty and the builder's "
                    f"stored size is unknown); add it to echojax.predict.STORED_SIZE")
  return int(stored or size), (int(size) if size else None)


def scaling(config) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) in [0, 255] units that the run's loader applied: x / 255 for ``data.value_range="unit"``, else
  the prepared data's ``echojax_stats.json`` (which predict then needs to find under ``data.data_dir``)."""
  mode = config.data.get("value_range", "dataset")
  if mode == "unit":
    return np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
  from echojax.data import pipeline

  data_dir, name = config.data.get("data_dir", ""), config.data.get("name", "")
  hits = sorted(Path(str(data_dir)).glob(f"{name}/*/*/{pipeline.STATS_FILE}")) + \
      sorted(Path(str(data_dir)).glob(f"{name}/*/{pipeline.STATS_FILE}"))
  if not data_dir or not hits:
    raise UserError(f"the run normalises with the prepared data's {pipeline.STATS_FILE}, which was not found under "
                    f"config.data.data_dir={data_dir!r}/{name}; predict needs the prepared data folder the run used")
  return pipeline.load_stats(hits[0], "image")


def load_pixels(path: Path, stored: int, size: int | None, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """One image file -> float32 (H, W, 3) model input, exactly as a prepared + loaded eval frame."""
  from echojax.data import pipeline
  from echojax.data.images import read_image, resize_image

  img = resize_image(read_image(path), stored)  # the builder's plain resize
  if size:
    img = pipeline._resize(img[None], size)[0]  # the loader's data.size resize
  return ((img.astype(np.float32) - mean) / std).astype(np.float32)


def write_csv(rows: list[dict[str, Any]], skipped: list[tuple[str, str]], cols: list[str], csv_path: Path) -> Path:
  """The predictions CSV (floats with 6 decimals) and, when files were skipped, ``skipped.csv`` beside it (a stale
  one from an earlier run is removed)."""
  csv_path.parent.mkdir(parents=True, exist_ok=True)
  with csv_path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
  skipped_path = csv_path.with_name("skipped.csv")
  if skipped:
    with skipped_path.open("w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["file", "reason"])
      w.writerows(skipped)
  elif skipped_path.exists():
    skipped_path.unlink()
  return csv_path


def predict_images(workdir: str | Path, images: str | Path | Sequence[str | Path], out: str | Path | None = None,
                   checkpoint: str = "best", batch_size: int = 16, write: bool = True) -> PredictResult:
  """Predicts class probabilities for ``images`` with the run in ``workdir``; see the module docstring."""
  import jax
  import jax.numpy as jnp
  from tqdm import tqdm

  from echojax import run as run_lib
  from echojax.data.images import ImageReadError

  workdir = Path(workdir)
  if checkpoint not in ("best", "latest", "auto"):
    raise UserError(f"--checkpoint {checkpoint!r}: use best, latest or auto")
  if batch_size < 1:
    raise UserError(f"--batch-size must be >= 1, got {batch_size}")
  run = run_lib.Run.load(workdir)
  config, task = run.config, run.task
  if config.data.get("preset", "video_clip") != "image":
    raise UserError(f"{workdir / run_lib.CONFIG_FILE}: the run trained on {config.data.get('preset', 'video_clip')!r} "
                    "inputs (video clips); predict its inputs with --videos (--images is for image runs, e.g. "
                    "echosdnet)")
  files = list_images(images)
  step, which, variables = run.restore(checkpoint)
  cfg_text = run_lib.config_lib.to_json(config)
  class_names = list(getattr(task, "class_names", None) or [str(i) for i in range(task.num_outputs)])
  stored, size = input_size(config)
  mean, std = scaling(config)
  side = size or stored

  forward = _FORWARD.get(cfg_text)
  if forward is None:  # one jitted function per run config, so repeated calls in a process compile once

    @jax.jit
    def forward(variables, x):
      logits, _ = run.model.apply(variables, x, train=False)  # x is scaled as the loader did (load_pixels)
      return task.predict(logits)["probs"]

    _FORWARD[cfg_text] = forward

  rows: list[dict[str, Any]] = []
  skipped: list[tuple[str, str]] = []
  pending: list[tuple[Path, np.ndarray]] = []

  def flush():
    if not pending:
      return
    x = np.zeros((batch_size, side, side, 3), np.float32)  # fixed batch shape: one compile
    for i, (_, pix) in enumerate(pending):
      x[i] = pix
    probs = np.asarray(jax.device_get(forward(variables, jnp.asarray(x))))[:len(pending)]
    for (p, _), pr in zip(pending, probs):
      row = {"file": str(p), "predicted_class": class_names[int(np.argmax(pr))]}
      row.update({f"prob_{c}": float(v) for c, v in zip(class_names, pr)})
      rows.append(row)
    pending.clear()

  for p in tqdm(files, desc="predict", unit="img", disable=len(files) < 2):
    try:
      pending.append((p, load_pixels(p, stored, size, mean, std)))
    except ImageReadError as e:
      skipped.append((str(p), str(e)))
      log.warning("skipped %s: %s", p, e)
      continue
    if len(pending) == batch_size:
      flush()
  flush()

  cols = ["file", "predicted_class"] + [f"prob_{c}" for c in class_names]
  csv_path = write_csv(rows, skipped, cols, Path(out) if out else workdir / "predictions" / "predictions.csv") \
      if write else None
  return PredictResult(rows, skipped, class_names, csv_path, which, step)


def list_videos(paths: str | Path | Sequence[str | Path]) -> list[Path]:
  """Cine files named by ``paths``: folders are searched recursively for video / DICOM / GIF suffixes and
  suffix-less files with a DICOM preamble, as ``echojax.data.ingest`` looks for them; see ``_list_files``."""
  from echojax.data.ingest import DICOM_SUFFIXES, GIF_SUFFIXES, VIDEO_SUFFIXES, is_candidate

  return _list_files(paths, "--videos", is_candidate,
                     f"cine files (looked recursively for {', '.join(VIDEO_SUFFIXES + DICOM_SUFFIXES + GIF_SUFFIXES)}"
                     " and DICOM files without a suffix); point it at a folder of cines or at one file")


def read_cine_as_stored(path: Path, stored: int) -> tuple[np.ndarray, float | None]:
  """(uint8 (T, stored, stored, 3) frames, fps or None) as the run's prepared data would hold this file: container
  videos decoded and resized as the builders do, DICOM / GIF read and squared as ingest does. Raises ReadError."""
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
  return to_square(cine.frames, stored), cine.fps


def predict_videos(workdir: str | Path, videos: str | Path | Sequence[str | Path], out: str | Path | None = None,
                   checkpoint: str = "best", write: bool = True) -> PredictResult:
  """Per-video predictions for ``videos`` with the video run in ``workdir``; see the module docstring."""
  from tqdm import tqdm

  from echojax import evaluate
  from echojax import run as run_lib
  from echojax.data import pipeline
  from echojax.data.ingest import ReadError

  workdir = Path(workdir)
  if checkpoint not in ("best", "latest", "auto"):
    raise UserError(f"--checkpoint {checkpoint!r}: use best, latest or auto")
  run = run_lib.Run.load(workdir)
  config = run.config
  if config.data.get("preset", "video_clip") == "image":
    raise UserError(f"{workdir / 'config.json'}: the run trained on still images (config.data.preset='image'); "
                    "predict its inputs with --images")
  files = list_videos(videos)
  train_split = config.data.get("train_split", "train")
  source, version_dir = pipeline.open_source(config.data, train_split)
  first = source[0]
  stored = int(first["video"].shape[1])
  stats = pipeline.load_stats(version_dir / pipeline.STATS_FILE, "video")
  task_keys = list(config.data.get("targets", None) or [k for k in ("ef", "label") if k in first])
  dummies = {k: np.zeros_like(np.asarray(first[k])) for k in task_keys}  # no labels: placeholders, not reported

  rows: list[dict[str, Any]] = []
  skipped: list[tuple[str, str]] = []
  class_names: list[str] = []
  step, which = -1, checkpoint
  data_cfg = run_lib.eval_data_cfg(config, "all")
  ev = state = task = None
  bar = tqdm(total=len(files), desc="predict", unit="cine", disable=len(files) < 2)
  for c0 in range(0, len(files), VIDEO_CHUNK):  # a chunk of decoded cines in memory at a time
    records: list[dict[str, Any]] = []
    kept: list[tuple[Path, int, float | None]] = []
    for p in files[c0:c0 + VIDEO_CHUNK]:
      bar.update(1)
      try:
        frames, fps = read_cine_as_stored(p, stored)
      except ReadError as e:
        skipped.append((str(p), str(e)))
        log.warning("skipped %s: %s", p, e)
        continue
      rec: dict[str, Any] = {"video": frames, "num_frames": np.int32(len(frames)), **dummies}
      if fps:
        rec["fps"] = np.float32(fps)
      records.append(rec)
      kept.append((p, len(frames), fps))
    if not records:
      continue
    loader = pipeline.build_loader(records, stats, data_cfg, "predict", train=False, seed=int(config.seed),
                                   process_index=0, process_count=1)
    if ev is None:  # restore once, on the first readable chunk (fixed batch shape: one compile for all chunks)
      x_shape = evaluate.loader_input_shape(loader, config)
      step, which, state = run.restore(checkpoint, x_shape)
      task = run.task
      ev = evaluate.Evaluator(config, run.model, task, run.mesh, run.shardings(x_shape))
    ev.loaders[("predict", "all")] = loader
    preds, targets, indices, _ = ev.predict(state, "predict", "all")
    class_names = list(getattr(task, "class_names", None) or []) if "probs" in preds else []
    cols = {k: v for k, v in task.csv_columns(preds, targets).items() if k != "target" and k not in task_keys}
    cols.update(evaluate.aux_columns(preds))
    for j, i in enumerate(indices):
      p, t, fps = kept[int(i)]
      row: dict[str, Any] = {"file": str(p), "num_frames": t, "fps": round(fps, 3) if fps else ""}
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
    header = list(rows[0]) if rows else ["file", "num_frames", "fps"]
    csv_path = write_csv(rows, skipped, header,
                         Path(out) if out else workdir / "predictions" / "predictions.csv")
  return PredictResult(rows, skipped, class_names, csv_path, which, step, kind="video")


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m echojax.predict", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="training run folder (holds config.json and checkpoints/)")
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--images", nargs="+", help="image file(s) and/or folder(s) (searched recursively); image runs")
  what.add_argument("--videos", nargs="+",
                    help="cine file(s) and/or folder(s): AVI/MP4/MOV/MKV, DICOM multi-frame, GIF; video runs")
  p.add_argument("--out", default=None, help="CSV path (default <workdir>/predictions/predictions.csv)")
  p.add_argument("--checkpoint", default="best", choices=["best", "latest", "auto"],
                 help="best (falls back to latest when no validation ran), latest, or auto")
  p.add_argument("--batch-size", type=int, default=16,
                 help="images per forward pass (fixed shape); videos use the run's eval.batch_size")
  return p.parse_args(list(argv))


@cli_main
def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("echojax").setLevel(logging.INFO)
  a = parse_args(sys.argv[1:] if argv is None else argv)
  if a.videos:
    result = predict_videos(a.workdir, a.videos, a.out, a.checkpoint)
  else:
    result = predict_images(a.workdir, a.images, a.out, a.checkpoint, a.batch_size)
  print(result.summary())
  for r in result.rows:
    print(json.dumps(r))


if __name__ == "__main__":
  main()
