"""Optimizer and learning-rate schedule from ``config.optim``.

Fields: ``name`` (sgd | adam | adamw), ``lr``, ``momentum`` (sgd), ``weight_decay`` (sgd: L2 added to the
gradient as torch's SGD ``weight_decay``; adamw: decoupled), ``schedule`` (constant | step | cosine),
``decay_every_epochs`` + ``decay_factor`` (step: x factor every N epochs, as echonet/dynamic's StepLR),
``warmup_steps``, ``grad_clip`` (global norm, 0 = off).
"""

from __future__ import annotations

import ml_collections
import optax

from echojax.errors import UserError


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  kind = cfg.get("schedule", "constant")
  lr = float(cfg.lr)
  if kind == "constant":
    sched = optax.constant_schedule(lr)
  elif kind == "step":
    every = max(1, int(round(cfg.decay_every_epochs * steps_per_epoch)))
    bounds = {every * k: float(cfg.get("decay_factor", 0.1)) for k in range(1, total_steps // every + 1)}
    sched = optax.piecewise_constant_schedule(lr, bounds)
  elif kind == "cosine":
    sched = optax.cosine_decay_schedule(lr, max(1, total_steps - int(cfg.get("warmup_steps", 0))))
  else:
    raise UserError(f"config.optim.schedule={kind!r} is unknown; use constant, step or cosine")
  warmup = int(cfg.get("warmup_steps", 0))
  if warmup:
    sched = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), sched], [warmup])
  return sched


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optax transformation, lr schedule) for ``config.optim``."""
  sched = make_schedule(cfg, steps_per_epoch, total_steps)
  name = cfg.get("name", "sgd")
  wd = float(cfg.get("weight_decay", 0.0))
  parts = []
  if cfg.get("grad_clip", 0.0):
    parts.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
  if name == "sgd":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.sgd(sched, momentum=float(cfg.get("momentum", 0.0)) or None))
  elif name == "adam":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.adam(sched))
  elif name == "adamw":
    parts.append(optax.adamw(sched, weight_decay=wd))
  else:
    raise UserError(f"config.optim.name={name!r} is unknown; use sgd, adam or adamw")
  return optax.chain(*parts), sched
