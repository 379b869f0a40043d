"""Parameter counts, Keras-style summaries and trainable masks for partial fine-tuning.

* ``trainable_mask(params, trainable_regex)`` -> pytree of bools (True = trained), matching each parameter's
  '/'-joined path (e.g. ``backbone/stage4_block0/conv1/kernel``) with ``re.search``.
* ``freeze(tx, mask)`` -> an optax transformation that applies ``tx`` to the trainable leaves and ZERO updates
  to the others. Use this rather than ``optax.masked(tx, mask)``: ``optax.masked`` passes the raw gradient
  through as the update of masked-out leaves, so "frozen" weights would still move.
* ``host_init(model, *inputs)`` -> variables with the shapes ``model.init`` would give, filled on the host with
  numpy (He-normal kernels, zero biases, unit BN scales/variances). For tests and benchmarks on CPU: compiling
  ``model.init`` spends most of its time on the threefry RNG (tens of seconds for an 18-layer net on a busy
  2-core machine); this costs one ``jax.eval_shape``.
* ``param_counts(variables, mask)`` / ``param_summary(variables, mask)`` count like Keras: every leaf of every
  collection is a weight; trainable = ``params`` leaves where the mask is True; non-trainable = the other
  ``params`` leaves plus all ``batch_stats`` (BN moving mean/variance, which Keras counts as non-trainable).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from echojax.errors import UserError


def leaf_path(path: tuple) -> str:
  """'/'-joined names of a pytree key path (dict keys, attributes, sequence indices)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def count_params(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct`` (works on ``jax.eval_shape`` output)."""
  return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree)))


def trainable_mask(params: Any, trainable_regex: str | None) -> Any:
  """Pytree of bools shaped like ``params``: True where the leaf's path matches ``trainable_regex``.

  ``None`` or ``""`` means everything is trainable. A regex that matches no parameter is a mistake (it would
  freeze the whole model) and raises ``UserError`` showing some real paths.
  """
  if not trainable_regex:
    return jax.tree.map(lambda _: True, params)
  try:
    pattern = re.compile(trainable_regex)
  except re.error as e:
    raise UserError(f"trainable_regex {trainable_regex!r} is not a valid regular expression ({e}); "
                    "fix the config field that sets it (e.g. optim.trainable)") from None
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  bits = [bool(pattern.search(leaf_path(p))) for p, _ in flat]
  if flat and not any(bits):
    examples = ", ".join(leaf_path(p) for p, _ in flat[:3])
    raise UserError(f"trainable_regex {trainable_regex!r} matches no parameter, so nothing would train; "
                    f"parameter paths look like: {examples}, ...")
  return jax.tree_util.tree_unflatten(treedef, bits)


def trainable_labels(mask: Any) -> Any:
  """Bool mask -> "trainable"/"frozen" labels, the form ``optax.multi_transform`` takes."""
  return jax.tree.map(lambda b: "trainable" if b else "frozen", mask)


def freeze(tx: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
  """``tx`` on the leaves where ``mask`` is True; exactly zero updates (no decay, no momentum) elsewhere."""
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, trainable_labels(mask))


def host_init(model: Any, *inputs: Any, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
  """Variables shaped like ``model.init(key, *inputs, **kwargs)`` but drawn with numpy (no RNG compile).

  Leaves named ``kernel``/``embedding`` get He-normal values (fan-in = all but the last axis), ``scale`` and
  ``var`` ones, ``bias`` and ``mean`` zeros, anything else N(0, 0.02). Dtypes follow the abstract init.
  """
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *inputs, **kwargs))
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = leaf_path(path).rsplit("/", 1)[-1]
    shape = tuple(x.shape)
    if name in ("kernel", "embedding") and len(shape) >= 2:
      value = rng.normal(0.0, np.sqrt(2.0 / max(1, int(np.prod(shape[:-1])))), shape)
    elif name in ("scale", "var"):
      value = np.ones(shape)
    elif name in ("bias", "mean"):
      value = np.zeros(shape)
    else:
      value = rng.normal(0.0, 0.02, shape)
    return jnp.asarray(value, dtype=x.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _split(variables: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
  if not isinstance(variables, Mapping) or "params" not in variables:
    raise UserError("param_summary/param_counts need the variables dict from model.init "
                    "(with a 'params' collection), not the params alone")
  return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def param_counts(variables: Mapping[str, Any], mask: Any = None) -> dict[str, int]:
  """Keras-style counts ``{"total", "trainable", "non_trainable"}`` of ``model.init``'s variables."""
  params, others = _split(variables)
  if mask is None:
    mask = jax.tree.map(lambda _: True, params)
  sizes = jax.tree.map(lambda x: int(np.prod(x.shape)), params)
  trainable = int(sum(s for s, m in zip(jax.tree.leaves(sizes), jax.tree.leaves(mask)) if m))
  total = count_params(params) + count_params(others)
  return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def _walk(tree: Any, prefix: str):
  """(path, leaf) pairs in the dict's own (creation) order; jax.tree flattening would sort the keys."""
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      yield from _walk(v, f"{prefix}/{k}" if prefix else str(k))
  else:
    yield prefix, tree


def _rows(variables: Mapping[str, Any], mask: Any, max_depth: int | None) -> list[tuple[str, int, int]]:
  """(module path, weights, trainable weights) per module, in first-seen order."""
  params, _ = _split(variables)
  train_paths = set()
  if mask is not None:
    flat_mask = jax.tree_util.tree_flatten_with_path(mask)[0]
    train_paths = {leaf_path(p) for p, m in flat_mask if m}
  rows: dict[str, list[int]] = {}
  for coll, tree in variables.items():
    for path, x in _walk(tree, ""):
      module = path.rsplit("/", 1)[0] if "/" in path else "(root)"
      if max_depth:
        module = "/".join(module.split("/")[:max_depth])
      n = int(np.prod(x.shape))
      row = rows.setdefault(module, [0, 0])
      row[0] += n
      if coll == "params" and (mask is None or path in train_paths):
        row[1] += n
  return [(k, v[0], v[1]) for k, v in sorted(rows.items(), key=lambda kv: _order(kv[0]))]


def _order(path: str) -> list:
  """Display order: stems first, then natural order (stage2 before stage10), head last."""
  key = []
  for part in path.split("/"):
    rank = 0 if part.startswith("stem") else 2 if part.startswith("head") else 1
    key.append((rank, [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", part)]))
  return key


def param_summary(variables: Mapping[str, Any], mask: Any = None, *, name: str = "model",
                  max_depth: int | None = None) -> str:
  """Keras-``model.summary()``-like table: one row per module (or per path prefix of ``max_depth`` names)
  with its weight count and how many of them train, then the Total / Trainable / Non-trainable lines."""
  rows = _rows(variables, mask, max_depth)
  counts = param_counts(variables, mask)
  w = max([len("Layer (path)")] + [len(r[0]) for r in rows]) + 2
  line = "_" * (w + 30)
  out = [f'Model: "{name}"', line, f"{'Layer (path)':<{w}}{'Param #':>14}{'Trainable #':>16}", "=" * (w + 30)]
  out += [f"{path:<{w}}{n:>14,}{t:>16,}" for path, n, t in rows]
  out += ["=" * (w + 30),
          f"Total params: {counts['total']:,}",
          f"Trainable params: {counts['trainable']:,}",
          f"Non-trainable params: {counts['non_trainable']:,}",
          line]
  return "\n".join(out)
