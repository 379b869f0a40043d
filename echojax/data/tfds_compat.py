"""TensorFlow-free fixes for TFDS, applied before preparing datasets.

echojax prepares and reads TFDS datasets without TensorFlow (array_record + numpy decoding). One TFDS code path
still needs TensorFlow: the shuffler spills splits over 1 GB to temporary bucket files via ``tf.io.gfile``.
"""

from __future__ import annotations

import os
import resource


def tfds_spill_without_tensorflow() -> None:
  """Let TFDS prepare splits larger than 1 GB without TensorFlow.

  TFDS' shuffler keeps up to 1 GB of serialized examples in memory and then spills them to temporary bucket files
  through ``tf.io.gfile``, which fails with "No module named 'tensorflow'" in a TF-free install (a 2,000-video
  phantom set is ~9 GB). This points that module's ``tf`` at a tiny local-file stand-in (open/exists/remove) and
  raises the open-file limit for its 1,000 bucket files. Only ``tensorflow_datasets.core.shuffle`` is affected.
  """
  import types

  from tensorflow_datasets.core import shuffle

  try:
    import tensorflow  # noqa: F401  (real TensorFlow present: nothing to do)

    return
  except ImportError:
    pass

  class _ResourceExhaustedError(Exception):
    message = ""

  gfile = types.SimpleNamespace(GFile=lambda path, mode="r": open(path, mode), exists=os.path.exists,
                                remove=os.remove)
  shuffle.tf = types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile),
                                     errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError))
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  want = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
  if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
