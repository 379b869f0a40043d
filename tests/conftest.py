"""Test set-up: 8 fake CPU devices (set before JAX starts), shared paths and small synthetic datasets."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
  """../shared/fixtures (real ECG records, ECG images, echo frames). Tests skip with a reason when absent."""
  if not FIXTURES.is_dir():
    pytest.skip(f"real fixtures not found at {FIXTURES} (a fresh clone without ../shared)")
  return FIXTURES


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
  """Each test session gets its own echojax cache, so tests never touch ~/.cache/echojax. Session-scoped so that
  module fixtures (which run before function-scoped ones) use it too."""
  root = tmp_path_factory.getbasetemp() / "echojax_cache"
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("ECHOJAX_CACHE", str(root))
    yield root
