"""Run a trained image classifier on arbitrary image files and write per-image class probabilities.

    python -m echojax.predict --workdir workdirs/echosdnet_demo --images FOLDER_OR_FILE [--images MORE ...]
        [--out predictions.csv] [--checkpoint best|latest|auto] [--batch-size 16]

Reads the run's ``config.json`` and the chosen checkpoint (``params``/``batch_stats`` only, as numpy: any device
count), then, for every image:

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

Python API: :func:`predict_images` (returns a :class:`PredictResult`). The same probabilities come out of the
exported PyTorch model (``python -m echojax.export`` then ``echoforge.load_model(name)``) when it is fed the same
[0, 1] NCHW tensor; this CLI is the JAX-side equivalent that needs no export.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.predict")

# Frame side the builders store (the plain resize done at preparation time), per dataset.
STORED_SIZE = {"unity": 224}
_FORWARD: dict[str, Any] = {}  # config.json text -> jitted model + softmax


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

  def summary(self) -> str:
    lines = [f"predicted {len(self.rows)} image(s) with the {self.checkpoint} checkpoint (step {self.step})"]
    if self.rows:
      counts = {c: sum(r["predicted_class"] == c for r in self.rows) for c in self.class_names}
      lines.append("predicted classes: " + ", ".join(f"{c}={n}" for c, n in counts.items()))
    if self.skipped:
      lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
      lines += [f"  {p}: {why}" for p, why in self.skipped]
    if self.csv_path is not None:
      lines.append(f"wrote {self.csv_path}")
    return "\n".join(lines)


def list_images(paths: str | Path | Sequence[str | Path]) -> list[Path]:
  """Image files named by ``paths``: a file as given (whatever its suffix), a folder recursively (files with an
  image suffix), in sorted order. Missing paths and folders without images raise ``UserError``."""
  from echojax.data.images import IMAGE_SUFFIXES

  if isinstance(paths, (str, Path)):
    paths = [paths]
  out: list[Path] = []
  for p in map(Path, paths):
    if p.is_dir():
      found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
      if not found:
        raise UserError(f"--images {p}: the folder has no image files (looked recursively for "
                        f"{', '.join(IMAGE_SUFFIXES)}); point it at a folder of frames or at one image file")
      out += found
    elif p.is_file():
      out.append(p)
    else:
      raise UserError(f"--images {p}: no such file or folder")
  return out


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


def predict_images(workdir: str | Path, images: str | Path | Sequence[str | Path], out: str | Path | None = None,
                   checkpoint: str = "best", batch_size: int = 16, write: bool = True) -> PredictResult:
  """Predicts class probabilities for ``images`` with the run in ``workdir``; see the module docstring."""
  import jax
  import jax.numpy as jnp
  from tqdm import tqdm

  from echojax import config as config_lib
  from echojax import tasks
  from echojax.data.images import ImageReadError
  from echojax.export import restore_variables
  from echojax.train import build_model

  workdir = Path(workdir)
  cfg_path = workdir / "config.json"
  if not cfg_path.is_file():
    raise UserError(f"{cfg_path} not found: --workdir must be a training run folder (python -m echojax.train "
                    "--config NAME --workdir DIR writes it)")
  if checkpoint not in ("best", "latest", "auto"):
    raise UserError(f"--checkpoint {checkpoint!r}: use best, latest or auto")
  if batch_size < 1:
    raise UserError(f"--batch-size must be >= 1, got {batch_size}")
  cfg_text = cfg_path.read_text()
  config = config_lib.from_json(cfg_text)
  if config.data.get("preset", "video_clip") != "image":
    raise UserError(f"{cfg_path}: the run trained on {config.data.get('preset')!r} inputs; echojax.predict runs "
                    "image models (config.data.preset='image'), e.g. echosdnet")
  files = list_images(images)
  from echojax.checkpoint import Checkpointer

  if checkpoint == "best":
    ck = Checkpointer(workdir, read_only=True)
    has_best = ck.best_step() is not None
    ck.close()
    if not has_best:
      log.warning("no best checkpoint in %s (no validation ran); using latest", workdir)
      checkpoint = "latest"
  step, which, variables = restore_variables(workdir, checkpoint)
  task = tasks.get_task(config)
  model = build_model(config, task)
  class_names = list(getattr(task, "class_names", None) or [str(i) for i in range(task.num_outputs)])
  stored, size = input_size(config)
  mean, std = scaling(config)
  side = size or stored

  forward = _FORWARD.get(cfg_text)
  if forward is None:  # one jitted function per run config, so repeated calls in a process compile once

    @jax.jit
    def forward(variables, x):
      logits, _ = model.apply(variables, x, train=False)
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

  csv_path = None
  if write:
    csv_path = Path(out) if out else workdir / "predictions" / "predictions.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["file", "predicted_class"] + [f"prob_{c}" for c in class_names]
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
      skipped_path.unlink()  # stale list from an earlier run
  return PredictResult(rows, skipped, class_names, csv_path, which, step)


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m echojax.predict", description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="training run folder (holds config.json and checkpoints/)")
  p.add_argument("--images", required=True, nargs="+", help="image file(s) and/or folder(s) (searched recursively)")
  p.add_argument("--out", default=None, help="CSV path (default <workdir>/predictions/predictions.csv)")
  p.add_argument("--checkpoint", default="best", choices=["best", "latest", "auto"],
                 help="best (falls back to latest when no validation ran), latest, or auto")
  p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (fixed shape)")
  return p.parse_args(list(argv))


@cli_main
def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("echojax").setLevel(logging.INFO)
  a = parse_args(sys.argv[1:] if argv is None else argv)
  result = predict_images(a.workdir, a.images, a.out, a.checkpoint, a.batch_size)
  print(result.summary())
  for r in result.rows:
    print(json.dumps(r))


if __name__ == "__main__":
  main()
