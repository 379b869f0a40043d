"""echoforge: the PyTorch-only side of echojax. Load exported echojax models as plain ``torch.nn.Module``s.

Needs only torch + safetensors (no JAX, no torchvision, never pickle)::

    import echoforge
    echoforge.list_models()                      # [{'name': 'EchoSDNet', 'version': 'v1', 'metrics': {...}, ...}]
    model = echoforge.load_model("EchoSDNet")    # eval mode, weights checked against the manifest's sha256
    logits = model(x)                            # x: (N, 3, 224, 224) float32 RGB in [0, 1]; PyTorch layout

Inputs are PyTorch layout: images ``(N, C, H, W)``, videos ``(N, C, T, H, W)`` (the JAX models are channels-last).
``forward`` returns the output tensor only (the JAX models return ``(output, aux)``). Models are exported with
``python -m echojax.export --workdir DIR --name NAME [--registry DIR]``; the registry root is the ``registry``
argument, else ``$ECHOFORGE_HOME``, else ``~/.cache/echoforge``.
"""

from __future__ import annotations

import os
from typing import Any

from echoforge.registry import (EXPORT_HINT, EchoforgeError, IntegrityError, ModelNotFoundError, find_entry,
                                read_manifest, registry_root, rename_legacy_keys)
from echoforge.registry import list_models as _list_models

__version__ = "0.1.0"
__all__ = ["EchoforgeError", "IntegrityError", "ModelNotFoundError", "architectures", "get_manifest", "list_models",
           "load_model", "registry_root"]


def list_models(registry: str | os.PathLike | None = None) -> list[dict[str, Any]]:
  """What the registry holds: one dict per exported version (name, version, architecture, metrics, created, path)."""
  return _list_models(registry)


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
               version: str | None = None):
  """Returns ``name`` as a ``torch.nn.Module`` in eval mode.

  Args:
    name: an exported model name (``--name`` of the export), or, with ``pretrained=False``, an architecture name
      (``echoforge.architectures()``, case-insensitive).
    pretrained: load the exported weights (sha256-checked against the manifest). False = the same architecture
      freshly initialised (architecture arguments from the manifest when exported, else the defaults).
    registry: registry root (default $ECHOFORGE_HOME, else ~/.cache/echoforge).
    version: e.g. "v2"; default the latest.

  Raises:
    ModelNotFoundError: unknown name / not exported (the message says how to export one).
    IntegrityError: corrupt manifest, sha256 mismatch, or weights that do not fit the architecture.
  """
  from echoforge.models import build

  entry = find_entry(name, version, registry)
  if entry is None:
    arch = _arch_name(name)
    if pretrained or arch is None:
      raise _not_exported(name, registry)
    model = build(arch)
    model.eval()
    return model
  manifest = read_manifest(entry)
  arch = manifest["architecture"]
  try:
    model = build(arch["name"], **arch.get("kwargs", {}), **arch.get("torch_kwargs", {}))
  except (KeyError, TypeError, ValueError) as e:
    raise IntegrityError(f"{entry / 'manifest.json'}: field 'architecture' cannot be built ({e}); this echoforge "
                         f"may be older than the exporter, or the manifest was edited") from e
  if pretrained:
    _load_weights(model, entry, manifest)
  model.eval()
  model.echoforge_manifest = manifest  # input spec, class names, metrics for callers
  return model


def _load_weights(model, entry, manifest: dict[str, Any]) -> None:
  """Checks the sha256 of the weight bytes, then parses them with safetensors (no pickle) and loads strictly (an
  entry exported before manifest format 2 has its torchvision-named ResNet keys renamed first)."""
  import hashlib

  from safetensors.torch import load as st_load

  path = entry / manifest["weights"]["file"]
  try:
    data = path.read_bytes()
  except OSError as e:
    raise IntegrityError(f"{path}: cannot read the weights ({e}); re-export with "
                         f"{EXPORT_HINT.format(name=manifest['name'])}") from e
  digest = hashlib.sha256(data).hexdigest()
  if digest != manifest["weights"]["sha256"]:
    raise IntegrityError(f"{path}: sha256 {digest} does not match the manifest's {manifest['weights']['sha256']} "
                         f"(the file is corrupt or was replaced); re-export with "
                         f"{EXPORT_HINT.format(name=manifest['name'])}")
  state = rename_legacy_keys(st_load(data), manifest, {k: tuple(v.shape) for k, v in model.state_dict().items()})
  try:
    model.load_state_dict(state, strict=True)
  except RuntimeError as e:
    raise IntegrityError(f"{path}: weights do not fit architecture {manifest['architecture']}: {e}") from e
