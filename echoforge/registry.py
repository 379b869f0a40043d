"""The echoforge registry on disk: ``<root>/<name>/<version>/{model.safetensors, manifest.json}``.

Root: the ``registry`` argument, else ``$ECHOFORGE_HOME``, else ``~/.cache/echoforge``. Versions are ``v1``, ``v2``,
... (a new export of the same name adds the next version; loading picks the highest unless one is named).

Loading never unpickles anything: the manifest is JSON, the weights are safetensors, and the weight file's sha256 is
checked against the manifest before the bytes are parsed. The manifest is not signed, so its sha256 only catches
corruption; a caller that knows which weights it trusts pins them with ``load_model(name, sha256=...)`` (the hash is
printed by the export and listed by :func:`list_models`).

Nothing below the root may be a symbolic link (model folder, version folder, manifest, weights): a link can point at
files the registry never exported, so entries holding one are refused (:class:`IntegrityError` naming the link),
even when the link stays inside the registry. The root itself may be a link (e.g. ``~/.cache`` on another disk).
Manifests and weights must be regular files and are opened without following links.

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
import stat
import tempfile
import warnings
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
  """A registry entry is corrupt or not what the registry exported: bad manifest, symbolic link, sha256 mismatch
  (with the manifest or with the caller's pinned ``sha256=``), unreadable weights, an architecture that cannot be
  built, or weights that do not fit the architecture. The message names the path and what is wrong."""


class BrokenEntryWarning(UserWarning):
  """:func:`list_models` skipped entries it cannot read (each named with what is wrong)."""


#: at most this many elements in the state dict of a model built from a manifest (ViT-H has ~0.63e9): an absurd
#: architecture argument is refused before any memory is allocated.
MAX_STATE_ELEMENTS = 2_000_000_000


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


def check_no_links(entry: Path, *files: str) -> None:
  """IntegrityError when the model folder, the version folder ``entry`` or one of its ``files`` is a symbolic link."""
  root = entry.parent.parent
  for p in (entry.parent, entry, *(entry / f for f in files)):
    if p.is_symlink():
      try:
        target = os.readlink(p)
      except OSError:
        target = "?"
      raise IntegrityError(f"{p}: is a symbolic link (-> {target}); echoforge refuses links inside the registry "
                           f"{root} (a link can point at files the registry never exported). Replace it with the "
                           f"real file or folder, or re-export with {EXPORT_HINT.format(name=entry.parent.name)}")


def read_regular(path: Path) -> bytes:
  """The bytes of ``path``, which must be a regular file and not a link (opened without following links)."""
  flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
  try:
    fd = os.open(path, flags)
  except OSError as e:
    why = "is a symbolic link" if os.path.islink(path) else f"cannot be opened ({e})"
    raise IntegrityError(f"{path}: {why}") from e
  try:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      raise IntegrityError(f"{path}: is not a regular file")
    with os.fdopen(fd, "rb", closefd=False) as f:
      return f.read()
  except OSError as e:
    raise IntegrityError(f"{path}: cannot be read ({e})") from e
  finally:
    os.close(fd)


def read_manifest(entry: Path) -> dict[str, Any]:
  """Reads and checks ``<entry>/manifest.json`` (JSON only): a JSON object with the fields and types the loader
  needs, naming its own folder (name, version), next to a regular weights file; no links on the way."""
  path = entry / MANIFEST
  redo = f"re-export the model with {EXPORT_HINT.format(name=entry.parent.name)}"
  check_no_links(entry, MANIFEST, WEIGHTS)
  try:
    m = json.loads(read_regular(path).decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    raise IntegrityError(f"{path}: cannot read the manifest ({e}); {redo}") from e
  except IntegrityError as e:
    raise IntegrityError(f"{e}; cannot read the manifest; {redo}") from e
  if not isinstance(m, dict):
    raise IntegrityError(f"{path}: manifest must be a JSON object, got {type(m).__name__}; {redo}")
  for key in ("name", "version", "architecture", "weights"):
    if key not in m:
      raise IntegrityError(f"{path}: manifest has no field {key!r}; {redo}")
  if m["name"] != entry.parent.name or m["version"] != entry.name:
    raise IntegrityError(f"{path}: manifest is for {m['name']!r} {m['version']!r}, but it sits in the folder of "
                         f"{entry.parent.name!r} {entry.name!r} (an entry copied or moved by hand); {redo}")
  arch = m["architecture"]
  if (not isinstance(arch, dict) or not isinstance(arch.get("name"), str)
      or not all(isinstance(arch.get(k, {}), dict) for k in ("kwargs", "torch_kwargs"))):
    raise IntegrityError(f"{path}: field 'architecture' must be {{'name': str, 'kwargs': {{...}}, "
                         f"'torch_kwargs': {{...}}}}, got {arch!r:.200}")
  w = m["weights"]
  if not isinstance(w, dict) or w.get("file") != WEIGHTS or not re.fullmatch(r"[0-9a-f]{64}", str(w.get("sha256"))):
    raise IntegrityError(f"{path}: field 'weights' must name {WEIGHTS!r} and its sha256 (64 hex digits)")
  try:
    mode = os.lstat(entry / WEIGHTS).st_mode
  except OSError as e:
    raise IntegrityError(f"{entry / WEIGHTS}: the weights are missing ({e}); {redo}") from e
  if not stat.S_ISREG(mode):
    raise IntegrityError(f"{entry / WEIGHTS}: is not a regular file; {redo}")
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


def list_models(registry: str | os.PathLike | None = None, include_broken: bool = False) -> list[dict[str, Any]]:
  """One dict per exported (name, version): name, version, architecture, sha256 (of the weights, as the manifest
  records it: pin it with ``load_model(name, sha256=...)``), metrics, created, path.

  An entry whose manifest cannot be read or checked (:func:`read_manifest`; the weights are not hashed here) is left
  out with a :class:`BrokenEntryWarning` naming it and what is wrong; with ``include_broken`` it is listed as
  ``{"name", "version", "path", "broken": <what is wrong>}`` instead.
  """
  root = registry_root(registry)
  out, broken = [], []
  for n in names(root):
    for v in versions(root, n):
      entry = root / n / v
      try:
        m = read_manifest(entry)
      except EchoforgeError as e:
        broken.append(str(e))
        if include_broken:
          out.append({"name": n, "version": v, "path": str(entry), "broken": str(e)})
        continue
      out.append({"name": n, "version": v, "architecture": m["architecture"]["name"],
                  "sha256": m["weights"]["sha256"], "metrics": m.get("metrics") or {}, "created": m.get("created"),
                  "path": str(entry)})
  if broken:
    warnings.warn(f"echoforge registry {root}: {len(broken)} broken entr{'y' if len(broken) == 1 else 'ies'} "
                  f"{'listed as broken' if include_broken else 'left out'}: " + " | ".join(broken),
                  BrokenEntryWarning, stacklevel=2)
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
