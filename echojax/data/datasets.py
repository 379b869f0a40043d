"""Dataset table: the builder, phantom generator and defaults of each dataset echojax knows.

``ensure_synthetic`` (implemented with the EchoNet data path) generates + prepares a phantom set into the cache
when a config names no data_dir.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str  # TFDS builder name, e.g. "echonet_dynamic"
  builder_module: str  # importing it registers the builder
  generator: str  # key in echojax.data.synthetic.GENERATORS
  default_config: str | None  # TFDS builder config, e.g. "112"


DATASETS = {
    "echonet_dynamic": DatasetInfo("echonet_dynamic", "tfds_builders.echonet_dynamic", "echonet", "112"),
    "echo_views": DatasetInfo("echo_views", "tfds_builders.echo_views", "echo_views", "videos"),
    "unity": DatasetInfo("unity", "tfds_builders.unity", "unity", None),
}


# Loaders of datasets that are not prepared TFDS data (in-memory or custom sources), by dataset name.
_LOADERS: dict = {}


def register_loader(name: str, make_loader, options: dict | None = None) -> None:
  """``config.data.name == name`` is loaded by ``make_loader(data_cfg, split, *, train, seed, process_index,
  process_count)`` instead of the prepared-data pipeline; the loader follows the pipeline's contract
  (docs/ARCHITECTURE.md: iterable over batches, ``get_state``/``set_state``, ``targets``). Registering happens in
  Python (a module the process imports), never through a config field. ``options``: the loader's own
  ``config.data`` fields and their defaults (the config schema accepts them for this dataset)."""
  if name in DATASETS:
    raise ValueError(f"dataset {name!r} is a prepared dataset; pick another name for a custom loader")
  _LOADERS[name] = (make_loader, dict(options or {}))


def custom_loader(name: str | None):
  """The loader registered for dataset ``name``, or None (the prepared-data pipeline)."""
  return _LOADERS[name][0] if name in _LOADERS else None


def custom_options(name: str | None) -> dict:
  """The extra ``config.data`` fields (with defaults) of the loader registered for ``name``."""
  return dict(_LOADERS[name][1]) if name in _LOADERS else {}


# Phantom-set size used when a config names no data_dir (None -> the generator's own default).
SYNTHETIC_DEFAULT_NUM = {"echonet_dynamic": 200}
_PRETTY = {"echonet_dynamic": "EchoNet-Dynamic"}


def ensure_synthetic(name: str = "echonet_dynamic", config: str | None = None, num: int | None = None,
                     seed: int = 0, *, verbose: bool = True):
  """Generate + prepare the synthetic phantom set of ``name`` once and return its TFDS ``data_dir``.

  Layout: ``<cache>/synthetic/<name>-n<num>-s<seed>/raw`` (the phantom raw folder, shared by all configs) and
  ``.../tfds`` (the prepared data, one sub-folder per builder config). Each step writes a marker file when it
  completes (``raw/.echojax_complete``, ``tfds/.echojax_complete-<config>``); a step without its marker (an
  interrupted run) is redone from scratch. A file lock keeps concurrent callers from building the same set twice.
  The trainer calls this when ``config.data.data_dir`` is empty.
  """
  import fcntl
  import importlib
  import shutil
  import sys
  from pathlib import Path

  from echojax import paths
  from echojax.errors import UserError

  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r} for synthetic data; available: {', '.join(sorted(DATASETS))}")
  info = DATASETS[name]
  config = config or info.default_config
  num = num if num is not None else SYNTHETIC_DEFAULT_NUM.get(name)
  root = paths.synthetic_dir(name, f"n{num if num is not None else 'default'}-s{seed}")
  raw, tfds_dir = root / "raw", root / "tfds"
  raw_done, tfds_done = raw / ".echojax_complete", tfds_dir / f".echojax_complete-{config}"
  if verbose:
    print(f"no data_dir configured: using synthetic {_PRETTY.get(name, name)} phantoms at {root}", file=sys.stderr,
          flush=True)
  if tfds_done.exists():
    return tfds_dir
  root.mkdir(parents=True, exist_ok=True)
  with open(root.parent / f"{root.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if tfds_done.exists():  # another process finished it while we waited
        return tfds_dir
      if not raw_done.exists():
        shutil.rmtree(raw, ignore_errors=True)
        from echojax.data.synthetic import get_generator

        gen = get_generator(info.generator)
        if verbose:
          print(f"generating {num if num is not None else 'the default number of'} {name} phantoms (seed {seed}) "
                f"into {raw} (once)", file=sys.stderr, flush=True)
        if num is None:
          gen.generate(raw, seed=seed)
        else:
          gen.generate(raw, num, seed)
        raw_done.write_text("complete\n")
      from echojax.data import prepare as prep

      importlib.import_module(info.builder_module)
      # overwrite=True removes only this config's version folder, so an interrupted preparation restarts
      # cleanly and other prepared configs stay
      prep.prepare(name, raw, tfds_dir, config, strict=False, overwrite=True, verbose=verbose)
      tfds_done.parent.mkdir(parents=True, exist_ok=True)
      tfds_done.write_text("complete\n")
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return tfds_dir
