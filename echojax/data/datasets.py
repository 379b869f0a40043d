"""Dataset table: the builder, phantom generator and defaults of each dataset echojax knows.

``echojax.data.prepare.ensure_synthetic`` generates + prepares a phantom set into the cache when a config names
no data_dir; ``register_loader`` names loaders of datasets that are not prepared TFDS data.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str  # TFDS builder name, e.g. "echonet_dynamic"
  builder_module: str  # importing it registers the builder
  generator: str  # phantom generator module echojax.data.synthetic.<generator> (its command-line name)
  default_config: str | None  # TFDS builder config, e.g. "112"
  pretty: str | None = None  # name in messages (default ``name``)
  synthetic_num: int | None = None  # phantom-set size when a config names no data_dir (None: the generator's own)


DATASETS = {
    "echonet_dynamic": DatasetInfo("echonet_dynamic", "tfds_builders.echonet_dynamic", "echonet", "112",
                                   pretty="EchoNet-Dynamic", synthetic_num=200),
    "echo_views": DatasetInfo("echo_views", "tfds_builders.echo_views", "echo_views", "videos"),
    "unity": DatasetInfo("unity", "tfds_builders.unity", "unity", None),
    "ecg_images": DatasetInfo("ecg_images", "tfds_builders.ecg_images", "ecg_images", "224", pretty="ECG-printout"),
    "lvad": DatasetInfo("lvad", "tfds_builders.lvad", "lvad", "112", pretty="LVAD-cohort"),
}


# Loaders of datasets that are not prepared TFDS data (in-memory or custom sources), by dataset name.
_LOADERS: dict = {}
# echojax's own such loaders: the module that registers each, imported when its name is first looked up (so a
# workdir's config.json finds its loader without the experiment file).
BUILTIN_LOADERS = {"keyframe_features": "echojax.data.features"}


def _builtin(name: str | None) -> None:
  if name in BUILTIN_LOADERS and name not in _LOADERS:
    import importlib

    importlib.import_module(BUILTIN_LOADERS[name])


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
  _builtin(name)
  return _LOADERS[name][0] if name in _LOADERS else None


def custom_options(name: str | None) -> dict:
  """The extra ``config.data`` fields (with defaults) of the loader registered for ``name``."""
  _builtin(name)
  return dict(_LOADERS[name][1]) if name in _LOADERS else {}
