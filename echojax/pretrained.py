"""ImageNet initialisation of a ResNet backbone from a LOCAL weight file (nothing is downloaded).

    variables, report = load_imagenet_resnet("resnet50-11ad3fa6.pth", variables)            # torchvision
    variables, report = load_imagenet_resnet("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", variables)
    print(report.summary())

Trainer hook: ``--config.init.imagenet=PATH`` calls ``load_imagenet_resnet(PATH, {"params": ..., "batch_stats": ...})``
on the freshly initialised variables and trains from the result.

Formats (``layout`` = the file's naming scheme; default from the extension: ``.h5`` -> keras, else torchvision):

* ``"torchvision"``: a torchvision ResNet state dict (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ...,
  ``layerN.0.downsample.0/1``, ``fc.*``) as ``.pth`` / ``.pt`` (read with ``torch.load(weights_only=True)``, so
  no code in the file runs; a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and a ``module.`` prefix are
  accepted) or ``.safetensors``. Any depth 18-152 (read off the target model).
* ``"keras"``: keras.applications ResNet50 weight files (``.h5``): Keras 2 ``save_weights`` / application files
  (groups ``conv1_conv``, ``conv1_bn``, ``conv2_block1_0_conv`` (shortcut), ``conv2_block1_1_conv``, ... each with
  ``kernel``/``bias``/``gamma``/``beta``/``moving_mean``/``moving_variance``; ``model_weights/`` of a full-model file
  too) and Keras 3 ``.weights.h5`` (``layers/<name>/vars/<i>``). Keras kernels are HWIO like flax's: no transpose.

The weights go into the model's ResNet backbone: the root of ``params`` for ``ResNet``, ``params["backbone"]``
(EchoSDNet, FrameResNet) or ``params["backbone"]["net"]`` (temporal / fusion models with a ResNet frame backbone). The file's classifier (``fc`` / ``predictions``) is skipped; so is the model's head.
The returned :class:`ImportReport` lists what was loaded, skipped, unmatched (in the file, not used) and missing
(in the backbone, not in the file: those keep their initial values). A shape mismatch raises ``UserError`` naming the
key; so does a file whose layout does not fit the model (torchvision weights into a ``layout="keras"`` model).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echoforge import torchvision_names
from echoforge.archs import RESNET_STAGES
from echojax.convert import flatten, mirror_rules, to_flax_array, unflatten
from echojax.errors import UserError

log = logging.getLogger("echojax.pretrained")

KERAS_BN = {"gamma": ("params", "scale"), "beta": ("params", "bias"), "moving_mean": ("batch_stats", "mean"),
            "moving_variance": ("batch_stats", "var")}
KERAS3_ORDER = {"conv": ("kernel", "bias"), "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
                "dense": ("kernel", "bias")}
HEAD_KEYS = re.compile(r"^(fc\.|predictions|probs|head)")


@dataclass
class ImportReport:
  """What :func:`load_imagenet_resnet` did; ``summary()`` is a readable multi-line text."""
  path: str
  layout: str
  loaded: list[str] = field(default_factory=list)
  skipped_head: list[str] = field(default_factory=list)
  unmatched: list[str] = field(default_factory=list)
  missing: list[str] = field(default_factory=list)

  def summary(self) -> str:
    def few(xs):
      return ", ".join(xs[:10]) + (f" ... (+{len(xs) - 10})" if len(xs) > 10 else "") if xs else "none"
    return (f"ImageNet init from {self.path} ({self.layout} layout): loaded {len(self.loaded)} tensors into the "
            f"backbone\n  skipped (classifier head): {few(self.skipped_head)}\n"
            f"  in the file but unused: {few(self.unmatched)}\n"
            f"  in the backbone but not in the file (kept their initial values): {few(self.missing)}")


# ------------------------------------------------------------------------------------------------------ reading
def read_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
  """A torchvision-style state dict from .pth/.pt (``weights_only=True``: plain tensors only) or .safetensors."""
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file

    return _strip_prefix(dict(load_file(str(path))))
  try:
    import torch
  except ImportError as e:
    raise UserError(f"{path}: reading .pth files needs PyTorch (pip install 'echojax[torch]'), or convert the file "
                    "to .safetensors") from e
  try:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001  (torch raises many types for foreign / unsafe files)
    raise UserError(f"{path}: not a plain PyTorch state dict ({type(e).__name__}: {str(e)[:200]}); save it with "
                    "torch.save(model.state_dict(), path)") from e
  for key in ("state_dict", "model", "model_state_dict"):
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping):
    raise UserError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
  out = {}
  for k, v in obj.items():
    if hasattr(v, "detach"):
      out[str(k)] = v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
  return _strip_prefix(out)


def _strip_prefix(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Drops a DataParallel / wrapper prefix shared by every key (``module.``, ``model.``, ``backbone.``)."""
  for p in ("module.", "model.", "backbone."):
    if sd and all(k.startswith(p) for k in sd):
      sd = {k[len(p):]: v for k, v in sd.items()}
  return sd


def read_keras_h5(path: Path) -> dict[str, dict[str, np.ndarray]]:
  """{layer name: {weight name (kernel, bias, gamma, ...): array}} from a Keras 2 or Keras 3 weights .h5 file."""
  try:
    import h5py
  except ImportError as e:
    raise UserError(f"{path}: reading Keras .h5 weights needs h5py (pip install h5py)") from e
  out: dict[str, dict[str, np.ndarray]] = {}
  try:
    f = h5py.File(str(path), "r")
  except OSError as e:
    raise UserError(f"{path}: not a readable HDF5 file ({e})") from e
  with f:
    if "layers" in f and isinstance(f["layers"], h5py.Group) and "layer_names" not in f.attrs:  # Keras 3
      for name, g in f["layers"].items():
        vars_ = g.get("vars")
        if vars_ is None or not len(vars_):
          continue
        kind = "bn" if name.endswith("_bn") else "conv" if name.endswith("_conv") else "dense"
        order = KERAS3_ORDER[kind]
        out[name] = {order[int(i)] if int(i) < len(order) else str(i): np.asarray(vars_[i], np.float32)
                     for i in vars_}
      return out
    g = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("layer_names", list(g.keys()))]
    for name in names:
      if name not in g:
        continue
      layer = g[name]
      wnames = layer.attrs.get("weight_names", None)
      if wnames is None:  # walk the datasets
        wnames = []
        layer.visit(lambda p: wnames.append(p) if isinstance(layer[p], h5py.Dataset) else None)
      weights = {}
      for wn in wnames:
        wn = wn.decode() if isinstance(wn, bytes) else str(wn)
        short = wn.split("/")[-1].split(":")[0]
        weights[short] = np.asarray(layer[wn], np.float32)
      if weights:
        out[name] = weights
  return out


# ------------------------------------------------------------------------------------------------------ mapping
BACKBONE_PATHS = ((), ("backbone",), ("backbone", "net"))  # ResNet, EchoSDNet/FrameResNet, temporal models


def _backbone(params: Mapping[str, Any]) -> tuple[tuple[str, ...], Mapping[str, Any]]:
  for prefix in BACKBONE_PATHS:
    node: Any = params
    for k in prefix:
      node = node.get(k) if isinstance(node, Mapping) else None
    if isinstance(node, Mapping) and "stem_conv" in node:
      return prefix, node
  raise UserError("ImageNet init needs a ResNet backbone (params 'stem_conv' at the root, under 'backbone' or "
                  f"'backbone/net'); this model's params have {sorted(params)[:8]} (config field model.name)")


def _depth_and_layout(bb: Mapping[str, Any]) -> tuple[int, str]:
  counts = []
  for i in range(1, 5):
    counts.append(sum(1 for k in bb if k.startswith(f"stage{i}_block")))
  bottleneck = "conv3" in bb.get("stage1_block0", {})
  for depth, (kind, blocks) in RESNET_STAGES.items():
    if tuple(blocks) == tuple(counts) and (kind == "bottleneck") == bottleneck:
      layout = "keras" if "bias" in bb["stem_conv"] else "torchvision"
      return depth, layout
  raise UserError(f"the model's backbone has stages {counts} blocks; not a ResNet 18/34/50/101/152")


def _keras_flax_names(depth: int) -> dict[str, tuple[str, ...]]:
  """Keras layer name -> flax module path (inside the backbone), for bottleneck ResNets."""
  kind, blocks = RESNET_STAGES[depth]
  if kind != "bottleneck":
    raise UserError(f"Keras ImageNet weights exist for bottleneck ResNets (50/101/152); the model is ResNet{depth}")
  names = {"conv1_conv": ("stem_conv",), "conv1_bn": ("stem_bn",)}
  for i, n in enumerate(blocks, start=1):
    for k in range(n):
      base = f"conv{i + 1}_block{k + 1}"
      blk = f"stage{i}_block{k}"
      for j in (1, 2, 3):
        names[f"{base}_{j}_conv"] = (blk, f"conv{j}")
        names[f"{base}_{j}_bn"] = (blk, f"bn{j}")
      if k == 0:
        names[f"{base}_0_conv"] = (blk, "downsample_conv")
        names[f"{base}_0_bn"] = (blk, "downsample_bn")
  return names


def _subtree(tree: Mapping[str, Any], prefix: tuple[str, ...]) -> Mapping[str, Any]:
  for k in prefix:
    tree = tree.get(k, {}) if isinstance(tree, Mapping) else {}
  return tree


def _from_torchvision(sd: Mapping[str, np.ndarray], variables: Mapping[str, Any], prefix: tuple[str, ...]
                      ) -> tuple[dict[tuple[str, ...], np.ndarray], list[str], list[str]]:
  # The backbone's tensors (without the model's head) and their transforms come from the export's generic rule; the
  # torchvision key of each from the one torchvision <-> echoforge map; flax paths get the backbone's prefix back.
  backbone = {c: _subtree(variables.get(c, {}), prefix) for c in ("params", "batch_stats")}
  by_torch = {torchvision_names.key(r.torch, "2d"): dataclasses.replace(r, flax=(r.flax[0], *prefix, *r.flax[1:]))
              for r in mirror_rules(backbone) if r.flax is not None and not r.torch.startswith("head.")}
  flat, head, unmatched = {}, [], []
  for key, arr in sd.items():
    if key.endswith("num_batches_tracked"):
      continue
    if HEAD_KEYS.match(key):
      head.append(key)
      continue
    r = by_torch.get(key)
    if r is None:
      unmatched.append(key)
      continue
    flat[r.flax] = (key, np.ascontiguousarray(to_flax_array(np.asarray(arr, np.float32), r.kind)))
  return flat, head, unmatched


def _from_keras(layers: Mapping[str, Mapping[str, np.ndarray]], depth: int, prefix: tuple[str, ...]):
  names = _keras_flax_names(depth)
  flat, head, unmatched = {}, [], []
  for lname, weights in layers.items():
    if HEAD_KEYS.match(lname):
      head += [f"{lname}/{w}" for w in weights]
      continue
    mod = names.get(lname)
    if mod is None:
      unmatched += [f"{lname}/{w}" for w in weights]
      continue
    for w, arr in weights.items():
      if lname.endswith("_bn"):
        if w not in KERAS_BN:
          unmatched.append(f"{lname}/{w}")
          continue
        coll, leaf = KERAS_BN[w]
      elif w in ("kernel", "bias"):
        coll, leaf = "params", w
      else:
        unmatched.append(f"{lname}/{w}")
        continue
      flat[(coll, *prefix, *mod, leaf)] = (f"{lname}/{w}", np.asarray(arr, np.float32))
  return flat, head, unmatched


def load_imagenet_resnet(path: str | Path, variables: Mapping[str, Any], layout: str | None = None
                         ) -> tuple[dict[str, Any], ImportReport]:
  """Loads ImageNet ResNet weights from a local file into the ResNet backbone of ``variables``.

  Args:
    path: .pth / .pt / .safetensors (torchvision state dict) or .h5 (Keras) file.
    variables: the model's ``{"params": ..., "batch_stats": ...}`` (e.g. freshly initialised); not modified.
    layout: the file's naming scheme, "torchvision" or "keras"; default from the extension (.h5 -> keras).

  Returns:
    (new variables with the backbone replaced, as numpy float32 where loaded; :class:`ImportReport`).

  Raises:
    UserError: missing/unreadable file, a file layout that does not fit the model's layout, a shape mismatch
      (naming the key), or a file from which nothing matched.
  """
  path = Path(path).expanduser()
  if not path.is_file():
    raise UserError(f"ImageNet weights file {path} not found (config field init.imagenet); download it yourself "
                    "(echojax never downloads) and give its local path")
  if layout is None:
    layout = "keras" if path.suffix in (".h5", ".hdf5", ".keras") else "torchvision"
  if layout not in ("torchvision", "keras"):
    raise UserError(f"layout={layout!r}: use 'torchvision' (.pth/.safetensors) or 'keras' (.h5)")
  if "params" not in variables:
    raise UserError("load_imagenet_resnet needs the model variables {'params': ..., 'batch_stats': ...}")
  prefix, bb = _backbone(variables["params"])
  depth, model_layout = _depth_and_layout(bb)
  if model_layout != layout:
    raise UserError(f"{path} holds {layout}-layout ResNet weights but the model uses layout={model_layout!r} "
                    f"(config field model.layout); set model.layout={layout!r} to use these weights")
  if layout == "torchvision":
    flat_new, head, unmatched = _from_torchvision(read_torch_state_dict(path), variables, prefix)
  else:
    flat_new, head, unmatched = _from_keras(read_keras_h5(path), depth, prefix)
  if not flat_new:
    raise UserError(f"{path}: no tensor matched the model's ResNet{depth} backbone ({layout} naming expected, e.g. "
                    + ("'layer1.0.conv1.weight'" if layout == "torchvision" else "'conv2_block1_1_conv'")
                    + f"); unused names in the file: {unmatched[:5]}")
  flat = flatten(dict(variables))
  backbone_keys = [k for k in flat if k[0] in ("params", "batch_stats") and k[1:1 + len(prefix)] == prefix
                   and (len(prefix) or not k[1].startswith("head"))]
  report = ImportReport(str(path), layout, skipped_head=sorted(head), unmatched=sorted(unmatched))
  for fk, (src, arr) in flat_new.items():
    if fk not in flat:
      report.unmatched.append(src)
      continue
    want = tuple(np.shape(flat[fk]))
    if tuple(arr.shape) != want:
      raise UserError(f"{path}: {src} has shape {tuple(arr.shape)} but the model's {'/'.join(fk)} needs {want}; "
                      f"the file is not ImageNet ResNet{depth} weights for this model (check model.width/depth)")
    flat[fk] = arr.astype(np.float32)
    report.loaded.append("/".join(fk))
  report.missing = sorted("/".join(k) for k in backbone_keys if k not in flat_new)
  log.info("%s", report.summary())
  return unflatten(flat), report
