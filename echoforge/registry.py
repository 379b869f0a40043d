"""The echoforge registry on disk: ``<root>/<name>/<version>/{model.safetensors, manifest.json}``.

Root: the ``registry`` argument, else ``$ECHOFORGE_HOME``, else ``~/.cache/echoforge``. Versions are ``v1``, ``v2``,
... (a new export of the same name adds the next version; loading picks the highest unless one is named).

Loading never unpickles anything: the manifest is JSON, the weights are safetensors, and the weight file's sha256 is
checked against the manifest before the bytes are parsed.

Manifest fields (written by ``python -m echojax.export``): ``format`` (:data:`FORMAT`), ``name``, ``version``,
``architecture`` (``{"name": <echoforge/echojax architecture>, "kwargs": {...}}``), ``input`` (shape, layout, channels,
value range, normalisation), ``class_names``, ``weights`` (``file``, ``sha256``, ``num_params``), ``source`` (workdir,
config, git commit, step), ``metrics``, ``parity`` (max |torch - jax| measured at export time), ``created``.

Format 2 stores every tensor under its echoforge (= flax module path) name. Format 1 entries, exported when the
ResNet mirrors had torchvision's attribute names, hold their ResNet tensors (also those of ResNet backbones) under
torchvision's names; :func:`rename_legacy_keys` renames them (:mod:`echoforge.torchvision_names`) before loading.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from echoforge import torchvision_names

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
FORMAT = "echoforge-manifest/2"
#: manifest formats whose ResNet tensors are stored under torchvision's names
TORCHVISION_NAMED_FORMATS = frozenset({"echoforge-manifest/1"})
EXPORT_HINT = "python -m echojax.export --workdir DIR --name {name}"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_RE = re.compile(r"^v(\d+)$")


class EchoforgeError(Exception):
  """A registry problem the user can fix; the message says what and how."""


class ModelNotFoundError(EchoforgeError, LookupError):
  """The name is neither exported in the registry nor a known architecture (or a version is missing)."""


class IntegrityError(EchoforgeError):
  """A registry entry is corrupt: bad manifest, sha256 mismatch, or weights that do not fit the architecture."""


def registry_root(registry: str | os.PathLike | None = None) -> Path:
  """``registry`` if given, else $ECHOFORGE_HOME, else ~/.cache/echoforge."""
  if registry is not None:
    return Path(registry).expanduser()
  env = os.environ.get("ECHOFORGE_HOME")
  return Path(env).expanduser() if env else Path.home() / ".cache" / "echoforge"


def check_name(name: str) -> str:
  """Model names become folder names: letters, digits, ``_ . -``; no path separators."""
  if not isinstance(name, str) or not _NAME_RE.match(name):
    raise EchoforgeError(f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (e.g. EchoSDNet)")
  return name


def sha256_file(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def versions(root: Path, name: str) -> list[str]:
  """Versions of ``name`` that have a manifest, oldest first."""
  d = root / name
  if not d.is_dir():
    return []
  found = [(int(m.group(1)), p.name) for p in d.iterdir()
           if (m := _VERSION_RE.match(p.name)) and (p / MANIFEST).is_file()]
  return [v for _, v in sorted(found)]


def names(root: Path) -> list[str]:
  """Model names in the registry with at least one complete version."""
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if p.is_dir() and versions(root, p.name))


def read_manifest(entry: Path) -> dict[str, Any]:
  """Reads and checks ``<entry>/manifest.json`` (JSON only)."""
  path = entry / MANIFEST
  try:
    m = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise IntegrityError(f"{path}: cannot read the manifest ({e}); re-export the model with "
                         f"{EXPORT_HINT.format(name=entry.parent.name)}") from e
  for key in ("name", "version", "architecture", "weights"):
    if key not in m:
      raise IntegrityError(f"{path}: manifest has no field {key!r}; re-export the model with "
                           f"{EXPORT_HINT.format(name=entry.parent.name)}")
  arch = m["architecture"]
  if not isinstance(arch, dict) or "name" not in arch or not isinstance(arch.get("kwargs", {}), dict):
    raise IntegrityError(f"{path}: field 'architecture' must be {{'name': ..., 'kwargs': {{...}}}}")
  w = m["weights"]
  if not isinstance(w, dict) or w.get("file") != WEIGHTS or not re.fullmatch(r"[0-9a-f]{64}", str(w.get("sha256"))):
    raise IntegrityError(f"{path}: field 'weights' must name {WEIGHTS!r} and its sha256 (64 hex digits)")
  return m


def rename_legacy_keys(state: Mapping[str, Any], manifest: Mapping[str, Any],
                       shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
  """The weights of an entry keyed as the module expects: for a format-1 entry (no ``format`` counts as 1) the
  torchvision-named ResNet keys renamed to echoforge's; ``shapes`` are the module's state-dict keys -> shapes.
  Other keys, and every key of a newer entry, stay as they are (the strict load checks them)."""
  if manifest.get("format", "echoforge-manifest/1") not in TORCHVISION_NAMED_FORMATS:
    return dict(state)
  names = torchvision_names.from_torchvision(shapes)
  return {names.get(k, k): v for k, v in state.items()}


def find_entry(name: str, version: str | None = None, registry: str | os.PathLike | None = None) -> Path | None:
  """Folder of ``name`` at ``version`` (default: latest), or None when that name has no exported version."""
  root = registry_root(registry)
  check_name(name)
  vs = versions(root, name)
  if not vs:
    return None
  if version is None:
    return root / name / vs[-1]
  if version not in vs:
    raise ModelNotFoundError(f"model {name!r} has no version {version!r} in {root}; it has: {', '.join(vs)}")
  return root / name / version


def list_models(registry: str | os.PathLike | None = None) -> list[dict[str, Any]]:
  """One dict per exported (name, version): name, version, architecture, metrics, created, path."""
  root = registry_root(registry)
  out = []
  for n in names(root):
    for v in versions(root, n):
      m = read_manifest(root / n / v)
      out.append({"name": n, "version": v, "architecture": m["architecture"]["name"],
                  "metrics": m.get("metrics") or {}, "created": m.get("created"), "path": str(root / n / v)})
  return out


def write_entry(name: str, state_dict: Mapping[str, Any], manifest: Mapping[str, Any],
                registry: str | os.PathLike | None = None) -> Path:
  """Writes the next version of ``name``: safetensors weights + manifest (with the weights' sha256).

  ``state_dict`` maps torch state-dict keys to torch tensors. The files are written to a temporary folder and renamed
  into place, so a crash never leaves a half-written version that loads.
  """
  from safetensors.torch import save_file

  root = registry_root(registry)
  check_name(name)
  (root / name).mkdir(parents=True, exist_ok=True)
  vs = versions(root, name)
  nxt = f"v{int(vs[-1][1:]) + 1 if vs else 1}"
  while (root / name / nxt).exists():  # a stale folder without a manifest: skip its number
    nxt = f"v{int(nxt[1:]) + 1}"
  tmp = Path(tempfile.mkdtemp(prefix=f".{nxt}-", dir=root / name))
  try:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "name": name, "version": nxt})
    created = manifest.get("created") or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    m = {"format": FORMAT, "name": name, "version": nxt, "created": created}
    m.update({k: v for k, v in manifest.items() if k not in m})
    m["weights"] = {**dict(m.get("weights") or {}), "file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS),
                    "num_tensors": len(tensors)}
    (tmp / MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, root / name / nxt)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return root / name / nxt
