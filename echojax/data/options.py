"""Data-config options of the input pipeline: ``DEFAULTS`` (every ``config.data`` field with its default),
``resolve_options`` (config -> validated plain dict) and ``load_stats`` (the prepared normalisation statistics).

Data config fields (ml_collections.ConfigDict or dict; defaults in ``DEFAULTS``):

- ``name`` (dataset / TFDS builder name), ``data_dir`` (prepared data; empty -> the synthetic phantom set is
  generated and prepared into the cache), ``builder_config`` (e.g. "112"; ``config`` is an alias).
- ``preset``: "video_clip" (batch key ``video`` (B,T,H,W,C)) or "image" (batch key ``image`` (B,H,W,C)).
- ``frames``, ``period``: a clip is ``frames`` frames taken every ``period`` stored frames.
- ``clips`` (eval only): "one" (one clip per video at ``eval_start`` = "zero" or "center") or "all" (every clip
  start ``clip_stride`` apart, default ``frames * period``, plus one clip ending at the last frame; each clip is its
  own row with ``index`` + ``clip_id`` so evaluation can average per video; ``clip_stride=1`` is
  EchoNet-Dynamic's test-time augmentation) or "beats" (one clip per cardiac cycle, starting at its end-diastole:
  the R peaks of the record's ECG when it has one, else its intensity cycle (``frames.beat_clip_starts``); a cine
  without a plausible cycle gets the "all" clips; EchoNet-Dynamic's beat-by-beat evaluation).
- ``pad_mode``: videos shorter than a clip are padded with black frames ("zeros") or the last frame ("repeat");
  ``mask`` (B,T) is False on padded frames either way.
- ``batch_size``: the GLOBAL batch; each process loads ``batch_size // process_count`` rows.
- ``normalize``: "host" (float32 normalised batches, the default) or "device" (uint8 batches; the trainer
  normalises inside the jitted step with the same stats: see ``echojax.data.pipeline.input_normalization``).
- ``value_range``: None (the default; "dataset" says the same) normalises with the per-channel mean/std of the
  prepared data; "unit" scales pixels to [0, 1] (x / 255, i.e. mean 0 and std 255), for models that do their own
  preprocessing (EchoSDNet). Either way on the host for ``normalize="host"``, in the jitted step for "device".
- ``augment``: dict of options of :mod:`echojax.data.augment` (train only).
- ``targets``: record features copied into the batch (default: whichever of ``ef``/``label`` the records have).
- ``size``: resize frames to ``size`` x ``size`` after slicing (default: keep the stored size).
- ``frame_sampler``: a name registered with :func:`echojax.data.samplers.register_frame_sampler` (or pass a
  callable to ``make_loader``):
  ``fn(record, rng) -> frame indices`` replaces the start/period rule, e.g. ECG-gated phase sampling. Indices
  outside ``[0, num_frames)`` become padded frames.
- ``image_frame`` (image preset over video records): "middle" (mid-video), "random" (train), or a key frame:
  "ed", "es" or "mid" (their midpoint), from the tracings, else estimated from the ECG / intensity cycle
  (:mod:`echojax.data.keyframes`).
- ``worker_count`` (grain worker processes; 0 = in-process), ``worker_buffer_size``, ``read_threads``,
  ``prefetch``.
- ``split_file``: a JSON file of named record subsets of prepared splits, ``{"splits": {"<name>": {"of":
  "<prepared split>", "indices": [record indices]}}}``; a split of that name reads those records of ``of`` (in
  that order; batch ``index`` is the position in the subset), any other name the prepared split. Written by
  ``echojax.cv`` for the folds of a cross-validation (:func:`echojax.data.sources.write_split_file`).

Fields the pipeline itself does not read (echojax.train and echojax.predict do):

- ``input_key``: the batch key fed to the model ("video"; image configs say "image").
- ``train_split``: the split trained on ("train"; the validation split is ``config.evals.val.split``).
- ``synthetic_num``, ``synthetic_seed``: size (None = the generator's default) and seed of the synthetic phantom
  set made when ``data_dir`` is empty.
- ``loader``: "module:function" building the loaders (None = ``echojax.data.pipeline:make_loader``).
- ``device_prefetch``: training batches put onto the devices (sharded as the step takes them) ahead of the step
  that uses them, so host loading and the transfer overlap the running step (default 2; 0 = each batch is loaded
  and transferred just before its step). Each costs one global batch of device memory.

Only the clip is ever converted to float: the stored uint8 record is read, the clip frames are sliced from it,
then (optionally) warped, converted to float32 and normalised with the per-channel mean/std that
``python -m echojax.data.prepare`` stores as ``echojax_stats.json`` beside the prepared data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echojax.data import augment as aug
from echojax.errors import UserError

STATS_FILE = "echojax_stats.json"
PRESETS = ("video_clip", "image")
VALUE_RANGES = (None, "dataset", "unit")  # None and "dataset": the prepared mean/std; "unit": x / 255

#: evaluation clip choices (``data.clips``; ``evaluate --clips``)
CLIPS = ("one", "all", "beats")

DEFAULTS: dict[str, Any] = {
    "name": "echonet_dynamic",
    "data_dir": "",
    "builder_config": None,
    "config": None,  # alias of builder_config
    "preset": "video_clip",
    "frames": 32,
    "period": 2,
    "batch_size": 8,
    "clips": "one",
    "clip_stride": None,
    "eval_start": "zero",
    "pad_mode": "zeros",
    "normalize": "host",
    "value_range": None,
    "augment": {},
    "targets": None,
    "size": None,
    "frame_sampler": None,
    "image_frame": "middle",
    "worker_count": 0,
    "worker_buffer_size": 2,
    "read_threads": 2,
    "prefetch": 8,
    "split_file": None,
    # recorded by the trainer from the prepared train split, so a workdir carries what inference needs:
    # {"mean": [...], "std": [...] (0-255 units), "stored_size": side of the stored frames}
    "norm_stats": None,
    # read by echojax.run / train / predict, not by the pipeline
    "input_key": "video",
    "train_split": "train",
    "synthetic_num": None,
    "synthetic_seed": 0,
    "device_prefetch": 2,
}


def _cfg_get(cfg: Any, key: str) -> Any:
  if cfg is None:
    return DEFAULTS[key]
  if isinstance(cfg, Mapping):
    val = cfg.get(key, DEFAULTS[key])
  else:  # ml_collections.ConfigDict / FrozenConfigDict / any attribute bag
    val = cfg.get(key, DEFAULTS[key]) if hasattr(cfg, "get") else getattr(cfg, key, DEFAULTS[key])
  return DEFAULTS[key] if val is None and DEFAULTS[key] is not None else val


def _to_dict(x: Any) -> dict:
  if x is None:
    return {}
  if hasattr(x, "to_dict"):
    return x.to_dict()
  return dict(x)


def check_value_range(value: Any) -> Any:
  """``data.value_range`` if it is one of :data:`VALUE_RANGES`, else a UserError naming the allowed values."""
  if value not in VALUE_RANGES:
    raise UserError(f"config field data.value_range is {value!r}; use None (or 'dataset': normalise with the "
                    "prepared data's mean/std, the default) or 'unit' (x / 255, pixels in [0, 1])")
  return value


def resolve_options(data_cfg: Any) -> dict[str, Any]:
  """Data config -> plain dict of every option (defaults filled in), validated."""
  opts = {k: _cfg_get(data_cfg, k) for k in DEFAULTS}
  opts["augment"] = aug.check_options(_to_dict(opts["augment"]))
  if opts["preset"] not in PRESETS:
    raise UserError(f"config field data.preset is {opts['preset']!r}; use one of {', '.join(PRESETS)}")
  for k in ("frames", "period", "batch_size"):
    if int(opts[k]) < 1:
      raise UserError(f"config field data.{k} must be >= 1, got {opts[k]}")
  if opts["clips"] not in CLIPS:
    raise UserError(f"config field data.clips is {opts['clips']!r}; use one of {', '.join(CLIPS)}")
  if opts["eval_start"] not in ("zero", "center"):
    raise UserError(f"config field data.eval_start is {opts['eval_start']!r}; use 'zero' or 'center'")
  if opts["pad_mode"] not in ("zeros", "repeat"):
    raise UserError(f"config field data.pad_mode is {opts['pad_mode']!r}; use 'zeros' or 'repeat'")
  if opts["normalize"] not in ("host", "device"):
    raise UserError(f"config field data.normalize is {opts['normalize']!r}; use 'host' or 'device'")
  check_value_range(opts["value_range"])
  if opts["normalize"] == "device" and (opts["augment"].get("brightness") or opts["augment"].get("contrast")):
    raise UserError("config field data.normalize='device' ships uint8 clips, which cannot carry brightness/contrast "
                    "jitter: set data.normalize='host' or drop data.augment.brightness/contrast")
  if opts["image_frame"] not in ("middle", "random", "ed", "es", "mid"):
    raise UserError(f"config field data.image_frame is {opts['image_frame']!r}; use middle, random, ed, es or mid")
  if opts["targets"] is not None:
    opts["targets"] = [opts["targets"]] if isinstance(opts["targets"], str) else list(opts["targets"])
  return opts


def unit_stats() -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) in [0, 255] units of ``value_range="unit"``: (x - 0) / 255 on every channel."""
  return np.zeros(1, np.float32), np.full(1, 255.0, np.float32)


def load_stats(path: str | Path, feature: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Read per-channel (mean, std) in [0, 255] units from an echojax_stats.json.

  Accepted layouts: ``{"mean": [...], "std": [...]}`` at the top level, or under a feature key
  (``{"video": {"mean":..., "std":...}}``) or under ``"train"``.
  """
  path = Path(path)
  try:
    stats = json.loads(path.read_text())
  except FileNotFoundError:
    raise UserError(f"{path} not found: the prepared data has no normalisation statistics. Prepare the data with "
                    f"`python -m echojax.data.prepare <name> --manual-dir RAW --data-dir DATA_DIR`, which writes it "
                    "(or copy the echojax_stats.json of the original preparation next to the array_record files).")
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON ({e}); re-run `python -m echojax.data.prepare` to rewrite it")
  candidates = [stats]
  for key in (feature, "video", "image", "train", "stats"):
    if key and isinstance(stats.get(key), Mapping):
      candidates.append(stats[key])
  for c in candidates:
    if "mean" in c and "std" in c:
      mean = np.asarray(c["mean"], np.float32).reshape(-1)
      std = np.asarray(c["std"], np.float32).reshape(-1)
      if mean.shape != std.shape or np.any(std <= 0):
        raise UserError(f"{path}: fields mean/std must be same-length lists with std > 0, got {c['mean']} / "
                        f"{c['std']}; re-run `python -m echojax.data.prepare`")
      return mean, std
  raise UserError(f"{path} has no 'mean'/'std' fields; re-run `python -m echojax.data.prepare` to rewrite it")
