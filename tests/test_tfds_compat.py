"""Preparing splits that spill past TFDS' in-memory shuffle buffer works without TensorFlow."""

import importlib.util

import pytest
from tensorflow_datasets.core import shuffle

from echojax.data import prepare
from echojax.data.synthetic import unity as gen


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow installed: no shim needed")
def test_prepare_spills_to_disk_without_tensorflow(tmp_path, monkeypatch):
  raw = gen.generate(tmp_path / "raw", num_studies=4, seed=0)
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1)  # every split spills, as real EchoNet's 66 GB would
  version_dir = prepare.prepare("unity", raw, tmp_path / "tfds", None, verbose=False)
  import tensorflow_datasets as tfds
  from tfds_builders.unity import Unity

  b = Unity(data_dir=str(tmp_path / "tfds"), file_format="array_record")
  n = sum(len(b.as_data_source(s)) for s in ("train", "val", "test"))
  assert n == 12 and (version_dir / "dataset_info.json").exists()
