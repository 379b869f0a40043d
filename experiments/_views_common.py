"""Shared pieces of the echo view-classification experiments (``view_*.py`` and ``video_vit.py``).

Every view config is the same classification task (11 views, ``echo_views`` dataset) and differs only in its
model, its input (still frames or clips) and its frame selection, so the eight experiment files only describe
those; :func:`view_config` assembles the rest (task, data, optim, train, eval, mesh) in the project's schema (see
experiments/echonet_ef.py).

Variants (``NAME:smoke`` / ``NAME:demo`` / ``NAME`` = the full recipe at real size):

- full: 112 px cines (``videos`` builder config) or 224 px frames (``images_224``), batch 32 (16 for the video
  transformer), AdamW + warmup + cosine, 30 epochs, validation every epoch picks the best checkpoint by accuracy.
  ``data.data_dir`` empty = the synthetic echo-view phantom set (8 per view; made once into the cache); point it
  at a folder prepared by ``python -m echojax.data.prepare echo_views --manual-dir RAW --data-dir DIR --config
  videos`` (or ``images_224``) for real data.
- demo: the 64 px phantom cines (``videos_64``, 16 per view) resized to 32 px (64 px for still frames), small
  models, a few hundred steps: learns the views well above chance (1/11) in a few CPU minutes.
- smoke: 4 phantoms per view, 16-32 px, tiny models, 2 steps (seconds; used by the tests).

Frame selection: ``ecg`` (arg ``ecg=true|false``) switches on ECG-assisted phase sampling, the pipeline's
``frame_sampler`` hook with ``echojax.data.ecg``'s ``ecg_phases_<frames>`` sampler (half the frames around end-
diastole, half around end-systole of one cardiac cycle located from the cine's ECG R peaks; cines without ECG fall
back to the intensity-based cycle estimate). It is on by default for the configs built on per-frame features
(cnn_lstm, tcn/fusion, mhsa), whose temporal models see a sequence of cardiac phases rather than a contiguous
clip, and off for the pixel-level video models (video_vit, r3d, r2plus1d, 3dcnn), which need evenly spaced
frames (clips of ``frames`` frames every ``period`` stored frames). With ECG sampling, ``frames`` must be 4, 8,
16 or 32. The pipeline finds the ``ecg_phases_<N>`` samplers by name, so ``python -m echojax.evaluate`` (which
rebuilds the loader from config.json) uses the same frames.

Still-frame configs take ``ecg=True`` too (``view_image_effnetb2:ecg_phases``): they then read the cines (the
``VIDEO_DATA`` builder config and phantom count) instead of the stills, and the pipeline's ``ecg_phase_frame``
sampler picks one frame per cine at an ECG-derived phase (training: a random cycle and one of ED, ES and the
phases between; evaluation: ED of the first cycle), resized to the stills' side (``PHASE_IMAGE_DATA``), so the
image model gets the same ``image`` batches as from the stills.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from echojax.config import parse_arg
from echojax.data.ecg.sampler import PHASE_SAMPLER_FRAMES, phase_sampler_name
from echojax.data.samplers import PHASE_FRAME
from echojax.data.labels import ECHO_VIEWS
from echojax.errors import UserError

CLASS_NAMES = ECHO_VIEWS

# Per-variant data sizes: builder config, frame side after resize (None = stored size), phantoms per view.
VIDEO_DATA = {"full": ("videos", None, None), "demo": ("videos_64", 32, 16), "smoke": ("videos_64", 16, 4)}
IMAGE_DATA = {"full": ("images_224", None, None), "demo": ("images", 64, 16), "smoke": ("images", 32, 4)}
# Still frames picked from the cines by ECG phase (image configs with ecg=True): the cines' builder config and
# phantom count at the stills' input side, so the image model sees the same shape (the full recipe's 112 px cines
# are upsampled to the 224 px of images_224).
FULL_IMAGE_SIDE = 224
PHASE_IMAGE_DATA = {v: (VIDEO_DATA[v][0], IMAGE_DATA[v][1] or FULL_IMAGE_SIDE, VIDEO_DATA[v][2]) for v in VIDEO_DATA}
# Tiny per-frame EfficientNet-B2-family backbone for smoke/demo (full recipe: the real B2).
SMOKE_BACKBONE = {"width_mult": 0.25, "depth_mult": 0.25}
DEMO_BACKBONE = {"width_mult": 0.5, "depth_mult": 0.35}


def parse(name: str, arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """``parse_arg`` with the flags every view config takes (smoke, demo) plus the experiment's own defaults."""
  a = parse_arg(arg, smoke=False, demo=False, **defaults)
  if a.smoke and a.demo:
    raise UserError(f"{name}: pick one of smoke and demo, not both (config argument {arg!r})")
  return a


def variant(a: ml_collections.ConfigDict) -> str:
  return "smoke" if a.smoke else "demo" if a.demo else "full"


def ecg_sampler(name: str, frames: int, ecg: bool, video: bool = True) -> str | None:
  """The registered ECG phase sampler for ``frames`` frames of a clip (``ecg_phase_frame`` for still frames), or
  None when ECG sampling is off."""
  if not ecg:
    return None
  if not video:
    return PHASE_FRAME
  if frames not in PHASE_SAMPLER_FRAMES:
    raise UserError(f"{name}: ECG phase sampling gives {', '.join(map(str, PHASE_SAMPLER_FRAMES))} frames, got "
                    f"frames={frames}; pick one of those or set ecg=false")
  return phase_sampler_name(frames)


def view_config(name: str, a: ml_collections.ConfigDict, *, model_name: str, model_kwargs: dict, video: bool,
                frames: int = 1, period: int = 1, ecg: bool = False, batch_size: int | None = None,
                lr: float | None = None, weight_decay: float = 0.05, epochs: float | None = None,
                label_smoothing: float = 0.1, demo_steps: int = 150) -> ml_collections.ConfigDict:
  """The full view-classification config for experiment ``name`` in variant ``variant(a)``.

  ``model_kwargs`` are the model's constructor kwargs for this variant; ``video`` picks clips (B,T,H,W,C) over
  still frames (B,H,W,C); ``ecg`` picks the frames by ECG phase (still frames: one per cine, from the cines).
  ``batch_size``/``lr`` override the variant's defaults; ``epochs`` is the full recipe's length and ``demo_steps``
  the demo's.
  """
  v = variant(a)
  builder_config, size, num = (VIDEO_DATA if video else PHASE_IMAGE_DATA if ecg else IMAGE_DATA)[v]
  defaults = {"full": (32, 1e-3, 30.0), "demo": (16, 2e-3, 0.0), "smoke": (8, 1e-3, 0.0)}[v]
  batch_size = batch_size or defaults[0]
  lr = lr or defaults[1]
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": "classification", "num_classes": len(CLASS_NAMES),
                                      "class_names": list(CLASS_NAMES), "label_smoothing": label_smoothing})
  sampler = ecg_sampler(name, frames, ecg, video)
  c.data = ml_collections.ConfigDict({
      "name": "echo_views", "builder_config": builder_config, "preset": "video_clip" if video else "image",
      "input_key": "video" if video else "image", "frames": frames, "period": period, "batch_size": batch_size,
      "pad_mode": "repeat", "targets": ["label"], "size": size, "frame_sampler": sampler,
      # No flips: left/right orientation is part of what tells the views apart.
      "augment": {"shift": 0.05, "rotation": 5.0, "zoom": 0.05, "brightness": 0.1, "contrast": 0.1},
      "image_frame": "random", "synthetic_num": num})
  c.model = ml_collections.ConfigDict({"name": model_name, "kwargs": model_kwargs})
  c.optim = ml_collections.ConfigDict({"name": "adamw", "lr": lr, "weight_decay": weight_decay,
                                       "schedule": "cosine", "grad_clip": 1.0})
  c.train = ml_collections.ConfigDict({"log_every": 20})
  c.eval = ml_collections.ConfigDict({"best_metric": "accuracy", "best_mode": "max"})

  if v == "full":
    c.optim.warmup_steps = 100
    c.train.num_epochs = float(epochs or 30.0)
  elif v == "demo":
    c.optim.update(warmup_steps=10, weight_decay=1e-4)
    every = max(1, int(demo_steps) // 4)  # validate (and keep the best checkpoint) 4 times
    c.train.update(num_steps=int(demo_steps), log_every=10, checkpoint_every=every, checkpoint_every_epochs=0.0)
    # the run ends by scoring its best checkpoint on the test split with all clips (written to eval/test_best) and
    # printing accuracy, micro/macro-F1 against chance, as python -m echojax.evaluate would
    c.evals = {"val": {"every_steps": every, "every_epochs": 0.0},
               "test": {"split": "test", "clips": "all", "at_end": True, "bootstrap": 1000}}
  else:  # smoke: seconds on CPU; used by the tests
    c.data.augment = {"shift": 0.05}
    c.train.update(num_steps=2, log_every=1, checkpoint_every=2, checkpoint_every_epochs=0.0)
    c.evals = {"val": {"every_steps": 2, "every_epochs": 0.0}}
  return c


def frame_backbone(a: ml_collections.ConfigDict) -> dict:
  """Per-frame backbone kwargs of the temporal models: the real EfficientNet-B2 in the full recipe, a narrower and
  shallower B2-family network (width/depth multipliers) for demo and smoke."""
  v = variant(a)
  kw = {"full": {}, "demo": dict(DEMO_BACKBONE), "smoke": dict(SMOKE_BACKBONE)}[v]
  return {"backbone": "efficientnet_b2", "backbone_kwargs": kw}


def clip_frames(a: ml_collections.ConfigDict, full: int = 16) -> int:
  """Frames per clip: ``frames=`` when given, else 16 (full), 8 (demo), 4 (smoke)."""
  return int(a.frames) or {"full": full, "demo": 8, "smoke": 4}[variant(a)]
