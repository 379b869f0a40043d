"""Optimizer and learning-rate schedule from ``config.optim``.

Fields: ``name`` (sgd | adam | adamw), ``lr``, ``momentum`` (sgd), ``weight_decay`` (sgd: L2 added to the
gradient as torch's SGD ``weight_decay``; adamw: decoupled), ``schedule`` (constant | step | cosine),
``decay_every_epochs`` + ``decay_factor`` (step: x factor every N epochs, as echonet/dynamic's StepLR),
``warmup_steps``, ``grad_clip`` (global norm, 0 = off), ``l1`` (L1 regularisation: ``l1 * sign(w)``, the
gradient of ``l1 * sum |w|``, is added to the gradient of every kernel whose '/'-joined path matches the regex
``l1_on``, default every kernel; as ``weight_decay`` does for L2, so the logged loss is the task's alone).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
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


def add_l1(coef: float, on: str = "") -> optax.GradientTransformation:
  """Adds ``coef * sign(w)`` (the subgradient of ``coef * sum |w|``) to the updates of the kernels whose path
  matches ``on`` (regex; empty = every kernel)."""
  pattern = re.compile(on or ".")

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("add_l1 needs the parameters (optax update(..., params))")

    def one(path, u, p):  # frozen leaves (optax's MaskedNode, no leaves) never get here
      name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
      return u + coef * jnp.sign(p).astype(u.dtype) if name.endswith("kernel") and pattern.search(name) else u

    return jax.tree_util.tree_map_with_path(one, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optax transformation, lr schedule) for ``config.optim``."""
  sched = make_schedule(cfg, steps_per_epoch, total_steps)
  name = cfg.get("name", "sgd")
  wd = float(cfg.get("weight_decay", 0.0))
  parts = []
  if cfg.get("grad_clip", 0.0):
    parts.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
  l1 = float(cfg.get("l1", 0.0) or 0.0)
  if l1 < 0:
    raise UserError(f"config.optim.l1={l1} must be >= 0 (0 = no L1 regularisation)")
  if l1:
    try:
      re.compile(cfg.get("l1_on", "") or "")
    except re.error as e:
      raise UserError(f"config.optim.l1_on={cfg.get('l1_on')!r} is not a regular expression: {e}") from None
    parts.append(add_l1(l1, cfg.get("l1_on", "") or ""))
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
