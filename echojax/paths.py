"""Where echojax keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
  """Root of echojax's cache: $ECHOJAX_CACHE, else ~/.cache/echojax."""
  return Path(os.environ.get("ECHOJAX_CACHE", Path.home() / ".cache" / "echojax")).expanduser()


def synthetic_dir(dataset: str, tag: str) -> Path:
  """Folder of one synthetic phantom set: <cache>/synthetic/<dataset>-<tag>/{raw,tfds}."""
  return cache_dir() / "synthetic" / f"{dataset}-{tag}"


def compilation_cache_dir() -> Path:
  return cache_dir() / "jax_compilation_cache"
