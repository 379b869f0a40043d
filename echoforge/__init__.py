"""echoforge: the PyTorch-only side of echojax. Load exported echojax models as plain ``torch.nn.Module``s.

Needs only torch + safetensors (no JAX, no torchvision, never pickle)::

    import echoforge
    echoforge.list_models()                      # [{'name': 'EchoSDNet', 'version': 'v1', 'sha256': ..., ...}]
    model = echoforge.load_model("EchoSDNet")    # eval mode, weights checked against the manifest's sha256
    model = echoforge.load_model("EchoSDNet", sha256="9f2c...")  # ... and against the hash you trust
    logits = model(x)                            # x: (N, 3, 224, 224) float32 RGB in [0, 1]; PyTorch layout

Inputs are PyTorch layout: images ``(N, C, H, W)``, videos ``(N, C, T, H, W)`` (the JAX models are channels-last).
``forward`` returns the output tensor only (the JAX models return ``(output, aux)``). Models are exported with
``python -m echojax.export --workdir DIR --name NAME [--registry DIR]``; the registry root is the ``registry``
argument, else ``$ECHOFORGE_HOME``, else ``~/.cache/echoforge``.
"""

from __future__ import annotations

import os
from typing import Any

from echoforge.registry import (EXPORT_HINT, MAX_STATE_ELEMENTS, BrokenEntryWarning, EchoforgeError, IntegrityError,
                                ModelNotFoundError, find_entry, read_manifest, read_regular, registry_root,
                                rename_legacy_keys)
from echoforge.registry import list_models as _list_models

__version__ = "0.1.0"
__all__ = ["BrokenEntryWarning", "EchoforgeError", "IntegrityError", "ModelNotFoundError", "architectures",
           "get_manifest", "list_models", "load_model", "registry_root"]


def list_models(registry: str | os.PathLike | None = None, include_broken: bool = False) -> list[dict[str, Any]]:
  """What the registry holds: one dict per exported version (name, version, architecture, sha256 of the weights,
  metrics, created, path). Broken entries are left out with a :class:`BrokenEntryWarning` naming each (with
  ``include_broken``: listed with a ``broken`` field saying what is wrong)."""
  return _list_models(registry, include_broken)


def architectures() -> list[str]:
  """Architecture names that can be built without weights (``load_model(arch, pretrained=False)``)."""
  from echoforge.archs import ARCHS
  return sorted(ARCHS)


def get_manifest(name: str, version: str | None = None, registry: str | os.PathLike | None = None) -> dict[str, Any]:
  """The manifest (dict) of an exported model: input spec, class names, metrics, source, ..."""
  entry = find_entry(name, version, registry)
  if entry is None:
    raise _not_exported(name, registry)
  return read_manifest(entry)


def _not_exported(name: str, registry) -> ModelNotFoundError:
  from echoforge.archs import ARCHS
  root = registry_root(registry)
  have = [m["name"] for m in _list_models(registry)]
  held = f"it holds: {', '.join(sorted(set(have)))}" if have else "it is empty"
  arch = f" ({name!r} is an architecture: load_model({name!r}, pretrained=False) builds it untrained.)" \
    if _arch_name(name) else f" Architectures: {', '.join(sorted(ARCHS))}."
  return ModelNotFoundError(
    f"model {name!r} is not exported in the echoforge registry {root} ({held}). Export a trained echojax workdir "
    f"with: {EXPORT_HINT.format(name=name)} [--registry {root}].{arch}")


def _arch_name(name: str) -> str | None:
  from echoforge.archs import ARCHS
  low = {k.lower(): k for k in ARCHS}
  return low.get(name.lower())


def load_model(name: str, pretrained: bool = True, registry: str | os.PathLike | None = None,
               version: str | None = None, sha256: str | None = None):
  """Returns ``name`` as a ``torch.nn.Module`` in eval mode.

  Args:
    name: an exported model name (``--name`` of the export), or, with ``pretrained=False``, an architecture name
      (``echoforge.architectures()``, case-insensitive).
    pretrained: load the exported weights (sha256-checked against the manifest). False = the same architecture
      freshly initialised (architecture arguments from the manifest when exported, else the defaults).
    registry: registry root (default $ECHOFORGE_HOME, else ~/.cache/echoforge).
    version: e.g. "v2"; default the latest.
    sha256: the sha256 (64 hex digits) of the weights you trust, as the export printed it or ``list_models()``
      lists it. The manifest is not signed, so its own sha256 only catches corruption: with ``sha256`` the weights
      must hash to this value, else IntegrityError (as the check_hash of torch's hub loader, or pip's hash
      mode). Pin the ``version`` too, or a newer export of the name will not match.

  Raises:
    ModelNotFoundError: unknown name / not exported (the message says how to export one).
    IntegrityError: corrupt manifest, symbolic link in the entry, sha256 mismatch (with the manifest or with
      ``sha256``), a payload that is not safetensors, an architecture that cannot be built, or weights that do
      not fit the architecture. The message names the path.
    ValueError: ``sha256`` is not 64 hex digits, or is given with ``pretrained=False``.
  """
  from echoforge.models import build

  pin = _check_pin(sha256, pretrained)
  entry = find_entry(name, version, registry)
  if entry is None:
    arch = _arch_name(name)
    if pretrained or arch is None:
      raise _not_exported(name, registry)
    model = build(arch)
    model.eval()
    return model
  manifest = read_manifest(entry)
  shapes = _planned_shapes(entry, manifest)  # on the meta device: nothing allocated yet
  state = _read_weights(entry, manifest, shapes, pin) if pretrained else None
  model = _build(entry, manifest)
  if state is not None:
    try:
      model.load_state_dict(state, strict=True)
    except RuntimeError as e:
      raise IntegrityError(f"{entry / manifest['weights']['file']}: weights do not fit architecture "
                           f"{manifest['architecture']}: {e}") from e
  model.eval()
  model.echoforge_manifest = manifest  # input spec, class names, metrics for callers
  return model


def _check_pin(sha256: str | None, pretrained: bool) -> str | None:
  if sha256 is None:
    return None
  import re

  pin = sha256.strip().lower() if isinstance(sha256, str) else sha256
  if isinstance(pin, str) and pin.startswith("sha256:"):
    pin = pin[len("sha256:"):]
  if not isinstance(pin, str) or not re.fullmatch(r"[0-9a-f]{64}", pin):
    raise ValueError(f"sha256={sha256!r}: expected the 64 hex digits of the weights' sha256 (list_models() lists "
                     f"them)")
  if not pretrained:
    raise ValueError("sha256= pins the exported weights, but pretrained=False reads none; drop one of them")
  return pin


def _build(entry, manifest: dict[str, Any]):
  """The entry's torch module (train mode); IntegrityError naming the manifest when its architecture cannot be
  built. Under ``with torch.device("meta")`` nothing is allocated."""
  from echoforge.models import build

  arch = manifest["architecture"]
  try:
    return build(arch["name"], **arch.get("kwargs", {}), **arch.get("torch_kwargs", {}))
  except Exception as e:  # noqa: BLE001  (any constructor failure: TypeError, RuntimeError, ValueError, ...)
    raise IntegrityError(f"{entry / 'manifest.json'}: field 'architecture' cannot be built "
                         f"({type(e).__name__}: {e}); this echoforge may be older than the exporter, or the "
                         f"manifest was edited") from e


def _planned_shapes(entry, manifest: dict[str, Any]) -> dict[str, tuple[int, ...]]:
  """State-dict key -> shape of the entry's module, built on the meta device (no memory), after checking its size:
  a negative, zero-sized or absurd architecture argument is an IntegrityError before anything is allocated."""
  import warnings

  import torch

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op": refused below
    with torch.device("meta"):
      model = _build(entry, manifest)
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  total = sum(v.numel() for v in model.state_dict().values())
  empty = sorted(k for k, p in model.named_parameters() if p.numel() == 0)
  where = f"{entry / 'manifest.json'}: field 'architecture' {manifest['architecture']}"
  if empty:
    raise IntegrityError(f"{where:.400} builds parameters with no elements ({', '.join(empty[:5])}); an argument is "
                         f"zero or too small")
  if total > MAX_STATE_ELEMENTS:
    raise IntegrityError(f"{where:.400} builds {total:,} weights (more than {MAX_STATE_ELEMENTS:,}); an argument is "
                         f"absurd")
  return shapes


def _read_weights(entry, manifest: dict[str, Any], shapes: dict[str, tuple[int, ...]], pin: str | None):
  """Checks the sha256 of the weight bytes (against the manifest, and against the caller's ``pin``), then parses
  them with safetensors (no pickle) and checks their keys and shapes against ``shapes`` (an entry exported before
  manifest format 2 has its torchvision-named ResNet keys renamed first). Returns the state dict."""
  import hashlib

  from safetensors.torch import load as st_load

  path = entry / manifest["weights"]["file"]
  redo = f"re-export with {EXPORT_HINT.format(name=manifest['name'])}"
  try:
    data = read_regular(path)
  except IntegrityError as e:
    raise IntegrityError(f"{e}; cannot read the weights; {redo}") from e
  digest = hashlib.sha256(data).hexdigest()
  if pin is not None and digest != pin:
    raise IntegrityError(f"{path}: sha256 {digest} is not the pinned sha256={pin} ({manifest['name']} "
                         f"{manifest['version']}: these are not the weights you trusted; the manifest says "
                         f"{manifest['weights']['sha256']})")
  if digest != manifest["weights"]["sha256"]:
    raise IntegrityError(f"{path}: sha256 {digest} does not match the manifest's {manifest['weights']['sha256']} "
                         f"(the file is corrupt or was replaced); {redo}")
  try:
    state = rename_legacy_keys(st_load(data), manifest, shapes)
  except Exception as e:  # noqa: BLE001  (safetensors raises SafetensorError, an Exception subclass)
    raise IntegrityError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); {redo}") from e
  missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
  wrong = sorted(f"{k} {tuple(state[k].shape)} != {shapes[k]}" for k in set(shapes) & set(state)
                 if tuple(state[k].shape) != shapes[k])
  if missing or unexpected or wrong:
    parts = [f"{what} {', '.join(ks[:8])}{' ...' if len(ks) > 8 else ''}" for what, ks in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong)) if ks]
    raise IntegrityError(f"{path}: weights do not fit architecture {manifest['architecture']}: {'; '.join(parts)}")
  return state
