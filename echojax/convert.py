"""Per-tensor name maps and transforms between echojax (flax) variables and echoforge (torch) state dicts.

A conversion is a list of :class:`Rule` s, one per tensor: ``(flax path, torch key, transform)``. Every family uses
the same rule (:func:`mirror_rules`): the torch key is the flax module path joined by "." (the echoforge mirrors use
the flax module names as attribute paths) and the transform follows from the kind of tensor. Every conversion checks
that each flax leaf and each torch key is used exactly once and that shapes agree (against the torch module's state
dict at export), so a renamed or added layer fails loudly instead of being dropped.

The one rule holds for the ResNet families too (2D ResNet, also as the backbone of EchoSDNet / FrameResNet / temporal
models, and R3D / R(2+1)D): their mirrors are named by the flax module paths. torchvision's names appear only at
the ImageNet-import boundary and for registry entries exported before manifest format 2
(:mod:`echoforge.torchvision_names`).

Transforms (flax -> torch; the inverse is applied for torch -> flax), chosen by the tensor:

* BatchNorm (a module with ``batch_stats``): ``params/scale`` -> ``weight``, ``params/bias`` -> ``bias``,
  ``batch_stats/mean`` -> ``running_mean``, ``batch_stats/var`` -> ``running_var``, and torch's
  ``num_batches_tracked`` (no flax counterpart; written as 0, a ``Rule`` with no flax path);
* kernels by rank: 2-D ``dense`` (in, out) -> (out, in) ``.T``; 4-D ``conv2d`` HWIO -> OIHW
  ``transpose(3, 2, 0, 1)``; 5-D ``conv3d`` THWIO -> OITHW ``transpose(4, 3, 0, 1, 2)``; 3-D ``conv1d``
  (K, I, O) -> (O, I, K), or inside an ``attention`` module the q/k/v (``heads_in``) / out (``heads_out``)
  reshapes to Linear weights (attention biases ``heads_bias``);
* ``copy``: biases, LayerNorm ``scale`` -> ``weight``, other parameters (class token, position embedding).

BatchNorm epsilons are NOT weights: both sides set them explicitly and the parity tests check the outputs agree.
Flax paths start with the collection: ``("params", "stem_conv", "kernel")``, ``("batch_stats", "stem_bn", "mean")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from echoforge import archs
from echojax.errors import UserError

TRANSFORMS = ("conv1d", "conv2d", "conv3d", "dense", "copy", "counter", "heads_in", "heads_out", "heads_bias")


@dataclass(frozen=True)
class Rule:
  """One tensor: flax path (None for torch-only buffers), torch state-dict key, transform name, and (for the
  attention reshapes, whose inverse needs it) the flax shape."""
  flax: tuple[str, ...] | None
  torch: str
  kind: str
  shape: tuple[int, ...] | None = None


def to_torch_array(x: np.ndarray, kind: str) -> np.ndarray:
  """Flax layout -> torch layout for one tensor."""
  if kind == "conv2d":
    return np.transpose(x, (3, 2, 0, 1))
  if kind == "conv3d":
    return np.transpose(x, (4, 3, 0, 1, 2))
  if kind == "dense":
    return np.transpose(x)
  if kind == "copy":
    return x
  if kind == "conv1d":  # (K, I, O) -> (O, I, K)
    return np.transpose(x, (2, 1, 0))
  if kind == "heads_in":  # attention q/k/v kernel (D, H, Dh) -> Linear weight (H*Dh, D)
    return np.transpose(x.reshape(x.shape[0], -1))
  if kind == "heads_out":  # attention out kernel (H, Dh, D) -> Linear weight (D, H*Dh)
    return np.transpose(x.reshape(-1, x.shape[-1]))
  if kind == "heads_bias":  # (H, Dh) -> (H*Dh,)
    return x.reshape(-1)
  raise ValueError(f"unknown transform {kind!r}")


def to_flax_array(x: np.ndarray, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
  """Torch layout -> flax layout for one tensor (inverse of :func:`to_torch_array`; the attention reshapes need
  the flax ``shape``)."""
  if kind == "conv2d":
    return np.transpose(x, (2, 3, 1, 0))
  if kind == "conv3d":
    return np.transpose(x, (2, 3, 4, 1, 0))
  if kind == "dense":
    return np.transpose(x)
  if kind == "copy":
    return x
  if kind == "conv1d":
    return np.transpose(x, (2, 1, 0))
  if kind in ("heads_in", "heads_out"):
    return np.transpose(x).reshape(shape)
  if kind == "heads_bias":
    return x.reshape(shape)
  raise ValueError(f"unknown transform {kind!r}")


# ----------------------------------------------------------------------------------------------------------- rules
def bn(flax: tuple[str, ...], torch: str) -> list[Rule]:
  """A BatchNorm: scale/bias (params), mean/var (batch_stats), plus torch's num_batches_tracked."""
  return [Rule(("params", *flax, "scale"), f"{torch}.weight", "copy"),
          Rule(("params", *flax, "bias"), f"{torch}.bias", "copy"),
          Rule(("batch_stats", *flax, "mean"), f"{torch}.running_mean", "copy"),
          Rule(("batch_stats", *flax, "var"), f"{torch}.running_var", "copy"),
          Rule(None, f"{torch}.num_batches_tracked", "counter")]


def _shape(v: Any) -> tuple[int, ...]:
  return tuple(getattr(v, "shape", None) or np.shape(v))


def mirror_rules(variables: Mapping[str, Any]) -> list[Rule]:
  """The name map of ``variables`` (arrays or ShapeDtypeStructs): one rule per tensor, the torch key the flax
  module path joined by ".", the transform from the kind of tensor (see the module docstring)."""
  flat = flatten(variables)
  stats_modules = {k[1:-1] for k in flat if k[0] == "batch_stats"}
  rules: list[Rule] = []
  done_bn: set[tuple[str, ...]] = set()
  for path in sorted(k for k in flat if k[0] == "params"):
    mod, leaf = path[1:-1], path[-1]
    t = ".".join(mod)
    shape = _shape(flat[path])
    if mod in stats_modules:
      if mod not in done_bn:
        rules += bn(mod, t)
        done_bn.add(mod)
    elif leaf == "kernel":
      if len(shape) == 3 and "attention" in mod:
        kind = "heads_out" if mod[-1] == "out" else "heads_in"
      elif len(shape) == 3:
        kind = "conv1d"
      else:
        kind = {2: "dense", 4: "conv2d", 5: "conv3d"}.get(len(shape))
        if kind is None:
          raise UserError(f"no PyTorch transform for the {len(shape)}-D kernel {'/'.join(path)}")
      rules.append(Rule(path, f"{t}.weight", kind, shape))
    elif leaf == "bias":
      rules.append(Rule(path, f"{t}.bias", "heads_bias" if len(shape) == 2 else "copy", shape))
    elif leaf == "scale":
      rules.append(Rule(path, f"{t}.weight", "copy", shape))
    else:
      rules.append(Rule(path, f"{t}.{leaf}" if t else leaf, "copy", shape))
  return rules


def rules_for(arch: str, kwargs: Mapping[str, Any] | None = None,
              variables: Mapping[str, Any] | None = None) -> list[Rule]:
  """The name map of architecture ``arch`` (a name of the table ``echoforge.archs.ARCHS``): the one rule
  :func:`mirror_rules` over the ``variables``' structure (arrays or ShapeDtypeStructs). ``kwargs`` (the architecture
  arguments) are not needed: the variables carry the structure, and the export checks every key and shape against
  the torch module built with them."""
  del kwargs
  if arch not in archs.ARCHS:
    raise UserError(f"no PyTorch mirror for architecture {arch!r} (echoforge/archs.py); exportable: "
                    f"{', '.join(archs.names())}")
  if variables is None:
    raise ValueError(f"rules_for({arch!r}) needs the variables (their structure gives the name map)")
  return mirror_rules(variables)


# ------------------------------------------------------------------------------------------------------ conversion
def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  """Nested dicts (flax variables) -> {path tuple: leaf}."""
  out: dict[tuple[str, ...], Any] = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, (*prefix, str(k))))
    else:
      out[(*prefix, str(k))] = v
  return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    d = out
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = v
  return out


def _check_unique(rules: list[Rule]) -> None:
  seen_f, seen_t = set(), set()
  for r in rules:
    if r.torch in seen_t or (r.flax is not None and r.flax in seen_f):
      raise ValueError(f"name map uses {r.torch if r.torch in seen_t else '/'.join(r.flax)} twice")
    seen_t.add(r.torch)
    if r.flax is not None:
      seen_f.add(r.flax)


def flax_to_torch(variables: Mapping[str, Any], rules: list[Rule],
                  expected: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
  """Flax variables (``{"params": ..., "batch_stats": ...}``) -> torch state dict of numpy arrays.

  Every flax leaf must be mapped (an unmapped one raises, naming it); ``expected`` (torch key -> shape, e.g. from
  ``{k: tuple(v.shape) for k, v in module.state_dict().items()}``) checks keys and shapes on the torch side too.
  """
  _check_unique(rules)
  flat = {k: v for k, v in flatten(variables).items() if k[0] in ("params", "batch_stats")}
  used: set[tuple[str, ...]] = set()
  out: dict[str, np.ndarray] = {}
  missing = []
  for r in rules:
    if r.kind == "counter":
      out[r.torch] = np.zeros((), np.int64)
      continue
    if r.flax not in flat:
      missing.append("/".join(r.flax))
      continue
    used.add(r.flax)
    out[r.torch] = np.array(to_torch_array(np.asarray(flat[r.flax], np.float32), r.kind), order="C")  # 0-d stays 0-d
  unused = sorted("/".join(k) for k in flat if k not in used)
  if missing or unused:
    raise UserError("flax variables do not match the name map (echojax/convert.py): "
                    + (f"missing in the variables: {missing[:8]}{' ...' if len(missing) > 8 else ''}; " if missing else "")
                    + (f"not mapped to any torch key: {unused[:8]}{' ...' if len(unused) > 8 else ''}" if unused else "")
                    + ". Was the model built with the same architecture arguments?")
  if expected is not None:
    check_shapes(out, expected)
  return out


def check_shapes(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], source: str = "converted") -> None:
  """Keys and shapes of ``state`` equal ``expected``; raises UserError naming the first differences."""
  extra = sorted(set(state) - set(expected))
  absent = sorted(set(expected) - set(state))
  bad = [f"{k}: {tuple(np.shape(state[k]))} vs {tuple(expected[k])}" for k in state
         if k in expected and tuple(np.shape(state[k])) != tuple(expected[k])]
  if extra or absent or bad:
    raise UserError(f"{source} weights do not fit the torch module: "
                    + (f"unexpected keys {extra[:8]}; " if extra else "")
                    + (f"missing keys {absent[:8]}; " if absent else "")
                    + (f"shape mismatches {bad[:8]}" if bad else ""))


def torch_to_flax(state: Mapping[str, Any], rules: list[Rule], like: Mapping[str, Any] | None = None,
                  *, skip_missing: bool = False) -> dict[str, Any]:
  """Torch state dict (numpy arrays or tensors) -> flax variables ``{"params": ..., "batch_stats": ...}``.

  With ``like`` (flax variables of the target model) the result's paths and shapes are checked against it; with
  ``skip_missing`` rules whose torch key is absent are skipped (callers report them) instead of raising.
  """
  _check_unique(rules)
  flat: dict[tuple[str, ...], np.ndarray] = {}
  missing = []
  for r in rules:
    if r.kind == "counter":
      continue
    if r.torch not in state:
      missing.append(r.torch)
      continue
    v = state[r.torch]
    v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    flat[r.flax] = np.array(to_flax_array(v.astype(np.float32), r.kind, r.shape), order="C")
  if missing and not skip_missing:
    raise UserError(f"torch state dict lacks keys of the name map: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
  if like is not None:
    ref = {k: v for k, v in flatten(like).items() if k[0] in ("params", "batch_stats")}
    bad = [f"{'/'.join(k)}: {v.shape} vs {tuple(np.shape(ref[k]))}" for k, v in flat.items()
           if k in ref and tuple(v.shape) != tuple(np.shape(ref[k]))]
    unknown = sorted("/".join(k) for k in flat if k not in ref)
    if bad or unknown:
      raise UserError("converted weights do not fit the flax model: "
                      + (f"shape mismatches {bad[:8]}; " if bad else "") + (f"unknown paths {unknown[:8]}" if unknown else ""))
  return unflatten(flat)


# ---------------------------------------------------------------------------------------------------- test weights
def random_variables(abstract: Mapping[str, Any], seed: int = 0, *, input_scale: float = 1.0) -> dict[str, Any]:
  """Deterministic random flax variables (numpy, float32) with the structure of ``abstract`` (e.g. from
  ``jax.eval_shape(model.init, ...)``), for parity and golden-logit tests.

  Unlike a fresh init, BatchNorm is non-trivial (scale, bias, running mean and variance all random), so the BN
  conversion is really exercised; scales keep activations O(1) so an absolute tolerance is meaningful. Kernels are
  N(0, 1/fan_in); the first conv (sorted first ``stem*``) is divided by ``input_scale`` (e.g. 128 for inputs in
  caffe units). Values depend only on ``seed`` and the sorted paths (numpy PCG64), not on JAX's RNG.
  """
  flat = flatten(abstract)
  rng = np.random.default_rng(seed)
  out: dict[tuple[str, ...], np.ndarray] = {}
  first_conv = next((k for k in sorted(flat) if k[0] == "params" and k[-1] == "kernel" and len(flat[k].shape) >= 4),
                    None)
  for path in sorted(flat):
    shape = tuple(flat[path].shape)
    leaf = path[-1]
    if path[0] == "batch_stats":
      val = rng.normal(0.0, 0.1, shape) if leaf == "mean" else rng.uniform(0.5, 1.5, shape)
    elif leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      val = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
      if path == first_conv:
        val = val / input_scale
    elif leaf == "scale":
      val = rng.uniform(0.5, 1.0, shape)
    elif leaf == "bias":
      val = rng.normal(0.0, 0.1, shape)
    else:
      val = rng.normal(0.0, 0.02, shape)
    out[path] = np.asarray(val, np.float32)
  return unflatten(out)
