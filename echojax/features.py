"""Backbone features of each video's key frames, written as a prepared features dataset (seed 004).

    python -m echojax.features --out FEATS --backbone resnet50 --weights resnet50-imagenet.pth --norm imagenet
    python -m echojax.features --out FEATS --workdir workdirs/my_image_run      # a trained echojax image model
    python -m echojax.features --out FEATS --data-dir PREPARED --builder-config 112 --frames ed,es,mid

For every record of every split (``--splits``, default train,val,test) of a prepared video dataset (default
echonet_dynamic; without ``--data-dir`` the synthetic phantom set), the key frames ED, ES and mid
(``echojax.data.keyframes``: the tracings', else estimated and flagged) go through the image preset of the
pipeline (``data.image_frame``), then the backbone in eval mode, jitted, batched and sharded over all local devices
(batch rows split over the mesh), and its pooled features (``aux["features"]``) are written into
``FEATS/<split>/shard_NNNNN.npz`` (layout: :mod:`echojax.data.features`). Shards are written whole (tmp + rename),
so rerunning the same command after an interruption skips the finished shards; a rerun with other settings into
the same folder is refused (nothing is overwritten). ``features.json`` records the backbone, its weights (the file
and its sha256, or the workdir and checkpoint step, or "random init") and the sha256 of the variables used.

Backbones: any image model of the zoo (``echoforge.archs``, video=False) built with ``num_classes=0``; ImageNet
ResNet weights from a local file (``--weights``: torchvision .pth/.safetensors or Keras .h5, through
``echojax.pretrained``); or ``--workdir`` of an echojax image run (its best checkpoint, its normalisation and
size). ``--norm dataset`` standardises pixels with the prepared train split's mean/std, ``imagenet`` scales to
[0, 1] then applies the ImageNet mean/std (what ImageNet weights were trained with).
Extraction runs in one process (multi-host extraction would need per-process shards).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echojax.data import features as feats_lib
from echojax.data.keyframes import KEY_FRAMES, key_frames
from echojax.errors import UserError, cli_main

log = logging.getLogger("echojax.features")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMS = ("dataset", "imagenet")
SKIP_TARGETS = ("ed_frame", "es_frame")  # scalar record features that are not targets (frame_index has them)


@dataclasses.dataclass
class Settings:
  """What a features folder is made from (``features.json["settings"]``; a resume must match it)."""

  data: dict  # name, builder_config, data_dir ("" = synthetic), synthetic_num, synthetic_seed
  backbone: str = "resnet50"
  backbone_kwargs: dict = dataclasses.field(default_factory=dict)
  weights: str | None = None  # ImageNet weights file
  workdir: str | None = None  # or an echojax image run
  frames: tuple[str, ...] = KEY_FRAMES
  size: int | None = None  # image side fed to the backbone (None: the stored side, or the run's data.size)
  norm: str = "dataset"
  shard_size: int = 256
  seed: int = 0  # random init when there are no weights

  def doc(self) -> dict:
    d = dataclasses.asdict(self)
    d["frames"] = list(self.frames)
    for k in ("weights", "workdir"):
      d[k] = None if d[k] is None else str(Path(d[k]).resolve())
    return d


def variables_sha256(variables: dict) -> str:
  """sha256 over every leaf (path, dtype, shape, bytes) in path order: which weights made the features."""
  import jax

  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0], key=lambda kv: str(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def build_backbone(s: Settings) -> tuple[Any, dict, dict, dict]:
  """(model, variables (numpy), data-config additions, weights record) of the settings' backbone."""
  from echoforge import archs

  from echojax.models import get_model
  from echojax.models.summary import host_init

  if s.workdir:
    from echojax import run as run_lib

    run = run_lib.Run.load(s.workdir)
    if run.config.data.preset != "image":
      raise UserError(f"--workdir {s.workdir} is a {run.config.data.preset} run; key-frame features need an image "
                      "model (a run with data.preset=image)")
    step, which, variables = run.restore("best")
    extra = {"norm_stats": run.config.data.norm_stats.to_dict() if run.config.data.norm_stats else None,
             "value_range": run.config.data.value_range, "size": s.size or run.config.data.size}
    return run.model, variables, extra, {"kind": "workdir", "workdir": str(Path(s.workdir).resolve()),
                                         "checkpoint": which, "step": int(step), "model": run.config.model.name}
  try:
    arch = archs.get(s.backbone)
  except KeyError:
    raise UserError(f"--backbone {s.backbone!r} is not an architecture of the zoo; image models: "
                    f"{', '.join(n for n, a in archs.ARCHS.items() if not a.video)}") from None
  if arch.video:
    raise UserError(f"--backbone {s.backbone} takes videos; key frames need an image model (e.g. resnet50)")
  model = get_model(s.backbone, num_classes=0, **s.backbone_kwargs)
  side = s.size or 112
  variables = host_init(model, np.zeros((1, side, side, 3), np.float32), seed=s.seed, train=False)
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  if not s.weights:
    log.warning("no --weights: %s is RANDOMLY initialised (seed %d); its features are random projections, "
                "useful for smoke tests and phantoms, not for real data", s.backbone, s.seed)
    return model, variables, {}, {"kind": "random", "seed": s.seed}
  from echojax.pretrained import load_imagenet_resnet

  path = Path(s.weights)
  if not path.is_file():
    raise UserError(f"--weights {path} does not exist (a local ImageNet ResNet file: .pth/.safetensors/.h5)")
  variables, report = load_imagenet_resnet(path, variables)
  log.info("ImageNet weights %s: %s", path, report.summary())
  return model, variables, {}, {"kind": "file", "file": str(path.resolve()), "sha256": file_sha256(path)}


def _data_cfg(s: Settings, extra: dict, frame: str, batch_size: int) -> dict:
  cfg = {**s.data, "preset": "image", "image_frame": frame, "batch_size": batch_size, "clips": "one",
         "normalize": "host", "input_key": "image", "augment": {}}
  if s.norm == "imagenet":
    cfg["value_range"] = "unit"
  cfg.update({k: v for k, v in extra.items() if v is not None})
  if s.size and "size" not in extra:
    cfg["size"] = s.size
  return cfg


def _check_resume(out: Path, doc: dict) -> dict:
  path = out / feats_lib.MANIFEST
  if not path.is_file():
    if out.exists() and any(out.iterdir()):
      raise UserError(f"--out {out} exists and is not a features folder (no {feats_lib.MANIFEST}); name a new "
                      "or empty folder (nothing is overwritten)")
    return {}
  old = json.loads(path.read_text())
  if old.get("settings") != doc:
    diff = sorted(k for k in set(doc) | set(old.get("settings", {})) if doc.get(k) != old.get("settings", {}).get(k))
    raise UserError(f"--out {out} holds features made with other settings ({', '.join(diff)} differ: "
                    f"{ {k: old.get('settings', {}).get(k) for k in diff} }); name a new --out folder, or rerun with "
                    "the same settings to resume (nothing is overwritten)")
  return old


def _record_meta(rec: dict, frames: Sequence[str]) -> tuple[list[int], str, dict]:
  kf = key_frames(rec)
  scalars = {k: np.asarray(v) for k, v in rec.items()
             if k not in SKIP_TARGETS and np.ndim(v) == 0 and np.asarray(v).dtype.kind in "biuf"}
  return [kf.index(f) for f in frames], kf.source, scalars


def _save_shard(path: Path, arrays: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.stem + ".tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def extract(out: str | Path, settings: Settings, *, splits: Sequence[str] = ("train", "val", "test"),
            batch_size: int = 32, progress: bool = True) -> Path:
  """Write (or finish) the features folder ``out``; returns it. See the module docstring."""
  import jax
  from tqdm import tqdm

  from echojax import sharding
  from echojax.data.pipeline import build_loader
  from echojax.data.options import unit_stats
  from echojax.data.sources import SubsetSource, open_source
  from echojax.models import layers

  out = Path(out)
  if settings.norm not in NORMS:
    raise UserError(f"--norm {settings.norm!r}: use one of {', '.join(NORMS)}")
  bad = [f for f in settings.frames if f not in KEY_FRAMES]
  if bad or not settings.frames:
    raise UserError(f"--frames {','.join(settings.frames)}: use some of {', '.join(KEY_FRAMES)}")
  if settings.shard_size < 1:
    raise UserError(f"--shard-size {settings.shard_size} must be >= 1")
  doc = settings.doc()
  info = _check_resume(out, doc)
  model, variables, extra, weights = build_backbone(settings)
  mesh = sharding.make_mesh([("data", -1)])
  batch_size = int(np.ceil(batch_size / mesh.size) * mesh.size)
  shard_in = sharding.batch_sharding(mesh)
  variables = jax.device_put(variables, sharding.replicated(mesh))
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  inv_std = 1.0 / np.asarray(IMAGENET_STD, np.float32)
  imagenet = settings.norm == "imagenet"

  @layers.jit
  def forward(v, x):
    if imagenet:
      x = (x - mean) * inv_std
    _, aux = model.apply(v, x, train=False)
    return aux["features"].astype(np.float32)

  info = {**info, "format": "echojax-features/1", "settings": doc, "frames": list(settings.frames),
          "backbone": {"name": model.__class__.__name__ if settings.workdir else settings.backbone,
                       "weights": weights, "variables_sha256": variables_sha256(jax.device_get(variables))},
          "splits": info.get("splits", {})}
  out.mkdir(parents=True, exist_ok=True)
  (out / feats_lib.MANIFEST).write_text(json.dumps(info, indent=1))

  first = _data_cfg(settings, extra, settings.frames[0], batch_size)
  sources = {split: open_source(first, split) for split in splits}
  total = sum(len(src) for src, _ in sources.values())
  bar = tqdm(total=total, desc="key-frame features", unit="video", disable=not progress)
  t0, done_now = time.time(), 0
  for split, (source, version_dir) in sources.items():
    n = len(source)
    stats = unit_stats() if first.get("value_range") == "unit" else None
    if stats is None:
      from echojax.data.pipeline import _prepared_stats

      stats = _prepared_stats(first, version_dir)
    starts = list(range(0, n, settings.shard_size))
    for si, lo in enumerate(starts):
      path = out / split / f"shard_{si:05d}.npz"
      hi = min(lo + settings.shard_size, n)
      if path.is_file():
        bar.update(hi - lo)
        continue
      idx = np.arange(lo, hi)
      sub = SubsetSource(source, idx, f"{split}[{lo}:{hi}]")
      feats = None
      for fi, frame in enumerate(settings.frames):
        loader = build_loader(sub, stats, _data_cfg(settings, extra, frame, batch_size), split, train=False,
                              seed=settings.seed, process_index=0, process_count=1)
        for batch in loader:
          x = sharding.global_batch({"image": batch["image"]}, shard_in)["image"]
          f = np.asarray(forward(variables, x))
          if feats is None:
            feats = np.zeros((hi - lo, len(settings.frames), f.shape[-1]), np.float32)
          ok = batch["valid"]
          feats[batch["index"][ok], fi] = f[ok]
      metas = [_record_meta(source[int(i)], settings.frames) for i in idx]
      arrays = {"features": feats, "index": idx.astype(np.int32),
                "frame_index": np.asarray([m[0] for m in metas], np.int32),
                "frame_source": np.asarray([m[1] for m in metas]),
                "file_name": np.asarray([_text(source[int(i)].get("file_name", str(i))) for i in idx])}
      keys = sorted(set.intersection(*[set(m[2]) for m in metas]))
      arrays.update({k: np.stack([m[2][k] for m in metas]).astype(np.float32 if np.asarray(
          metas[0][2][k]).dtype.kind == "f" else np.int64) for k in keys})
      _save_shard(path, arrays)
      bar.update(hi - lo)
      done_now += hi - lo
    estimated = _count_estimated(out, split)
    info["splits"][split] = {"num": n, "shards": len(starts), "complete": True, "estimated_key_frames": estimated}
    info["dim"] = int(np.load(out / split / "shard_00000.npz")["features"].shape[-1])
    (out / feats_lib.MANIFEST).write_text(json.dumps(info, indent=1))
    if estimated:
      log.warning("%s: %d of %d videos have estimated key frames (no tracings); frame_source says how", split,
                  estimated, n)
  bar.close()
  if done_now:
    log.info("features of %d videos in %.1f s -> %s", done_now, time.time() - t0, out)
  return out


def _text(v: Any) -> str:
  v = v.item() if isinstance(v, np.ndarray) else v
  return v.decode() if isinstance(v, bytes) else str(v)


def _count_estimated(out: Path, split: str) -> int:
  return int(sum((np.load(p)["frame_source"] != "tracings").sum() for p in feats_lib.shard_paths(out, split)))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m echojax.features", description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="features folder to write (or resume)")
  p.add_argument("--data", default="echonet_dynamic", help="prepared video dataset (default echonet_dynamic)")
  p.add_argument("--data-dir", default="", help="its prepared data_dir (default: the synthetic phantom set)")
  p.add_argument("--builder-config", default=None, help="its TFDS builder config (default the dataset's, e.g. 112)")
  p.add_argument("--synthetic-num", type=int, default=None, help="phantom-set size without --data-dir")
  p.add_argument("--backbone", default="resnet50", help="image model of the zoo (num_classes=0)")
  p.add_argument("--backbone-kwargs", default="{}", help='JSON, e.g. \'{"layout": "keras"}\'')
  p.add_argument("--weights", default=None, help="local ImageNet ResNet weights (.pth/.safetensors/.h5)")
  p.add_argument("--workdir", default=None, help="an echojax image run to use as the backbone instead")
  p.add_argument("--frames", default=",".join(KEY_FRAMES), help="key frames (ed,es,mid)")
  p.add_argument("--size", type=int, default=None, help="image side for the backbone (default: stored side)")
  p.add_argument("--norm", default="dataset", choices=NORMS)
  p.add_argument("--splits", default="train,val,test")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--shard-size", type=int, default=256, help="records per shard (the resume unit)")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def settings_from_args(a: argparse.Namespace) -> Settings:
  try:
    kwargs = json.loads(a.backbone_kwargs)
  except json.JSONDecodeError as e:
    raise UserError(f"--backbone-kwargs is not JSON ({e}): {a.backbone_kwargs!r}") from None
  data = {"name": a.data, "data_dir": a.data_dir, "builder_config": a.builder_config,
          "synthetic_num": a.synthetic_num, "synthetic_seed": 0}
  return Settings(data=data, backbone=a.backbone, backbone_kwargs=kwargs, weights=a.weights, workdir=a.workdir,
                  frames=tuple(f for f in a.frames.split(",") if f), size=a.size, norm=a.norm,
                  shard_size=a.shard_size, seed=a.seed)


@cli_main
def main(argv=None) -> None:
  from echojax import run as run_lib

  run_lib.setup_logging()
  run_lib.enable_compilation_cache()
  a = parse_args(argv)
  out = extract(a.out, settings_from_args(a), splits=[s for s in a.splits.split(",") if s],
                batch_size=a.batch_size)
  info = feats_lib.manifest(out)
  for split, s in info["splits"].items():
    print(f"[features] {split}: {s['num']} videos x {len(info['frames'])} frames x {info['dim']} "
          f"({s['estimated_key_frames']} with estimated key frames)")
  print(f"[features] {out} (backbone {info['backbone']['name']}, weights {info['backbone']['weights']['kind']})")


if __name__ == "__main__":
  main()
