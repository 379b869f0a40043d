"""Regenerates tests/golden/parity_golden.json: fixed-seed JAX outputs that guard the JAX -> PyTorch conversion.

    python tests/golden/make_golden.py          # regenerate every case
    python tests/golden/make_golden.py --add    # compute only the cases not yet in the file; the others stay as stored

Each case: an echojax architecture + arguments, a numpy seed for the variables (``echojax.convert.random_variables``,
non-trivial BatchNorm statistics) and for the input (uniform [0, 1), channels-last shape), and the JAX model's eval
output. tests/test_parity.py converts the same variables to the echoforge torch module and asserts its output equals
the stored one (and the JAX output) within 1e-4. Only regenerate when a model change is intended; a new
architecture (every entry of echoforge.archs.ARCHS needs a case) is added with ``--add``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

#: (id, arch, kwargs, channels-last input shape, input_scale for random_variables)
CASES = [
  ("resnet18_tv", "resnet18", {"width": 8, "num_classes": 5}, [2, 32, 32, 3], 1.0),
  ("resnet50_keras", "resnet50", {"width": 8, "num_classes": 5, "layout": "keras"}, [2, 32, 32, 3], 1.0),
  ("frame_resnet18", "frame_resnet", {"depth": 18, "width": 8, "num_classes": 3}, [2, 3, 32, 32, 3], 1.0),
  ("r3d_18", "r3d_18", {"width": 8, "num_classes": 5}, [2, 4, 32, 32, 3], 1.0),
  ("r2plus1d_18", "r2plus1d_18", {"width": 8, "num_classes": 5}, [2, 4, 32, 32, 3], 1.0),
  ("echosdnet_keras", "echosdnet", {"width": 8}, [2, 32, 32, 3], 128.0),
  # also the torchvision-layout ResNet50 (bottleneck stride on the 3x3), so no separate resnet50_tv case
  ("echosdnet_tv", "echosdnet", {"width": 8, "layout": "torchvision", "num_classes": 3}, [2, 32, 32, 3], 1.0),
  ("efficientnet_b0", "efficientnet_b0", {"width_mult": 0.25, "depth_mult": 0.25, "num_classes": 5}, [2, 32, 32, 3],
   1.0),
  ("vit_mu8", "vit", {"variant": "mu/8", "num_classes": 5}, [2, 32, 48, 3], 1.0),
  ("video_vit_factorised", "video_vit", {"variant": "mu/8x2", "attention": "factorised", "num_classes": 5},
   [2, 4, 32, 32, 3], 1.0),
  ("video_vit_joint_gap", "video_vit", {"variant": "mu/8x2", "attention": "joint", "pool": "gap", "num_classes": 5},
   [2, 4, 32, 24, 3], 1.0),
  ("cnn_lstm_resnet18", "cnn_lstm", {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "hidden_size": 16,
                                     "num_layers": 2}, [2, 5, 24, 24, 3], 1.0),
  ("tcn_efficientnet", "tcn", {"backbone": "efficientnet_b0", "width": 16,
                               "backbone_kwargs": {"width_mult": 0.25, "depth_mult": 0.25}}, [2, 5, 24, 24, 3], 1.0),
  ("mhsa_resnet18", "mhsa", {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "width": 16, "max_len": 8,
                             "num_heads": 2, "mlp_dim": 32, "depth": 1}, [2, 5, 24, 24, 3], 1.0),
  ("conv3d", "conv3d", {"widths": [8, 16], "temporal_strides": [1, 2]}, [2, 5, 24, 24, 3], 1.0),
  ("spatiotemporal_learned", "spatiotemporal", {"backbone": "resnet18", "backbone_kwargs": {"width": 8},
                                                "mode": "learned", "temporal": "tcn", "temporal_kwargs": {"width": 8},
                                                "combine": "probs", "num_classes": 3}, [2, 5, 24, 24, 3], 1.0),
  # one case per remaining entry of the architecture table (added with --add; the cases above are unchanged)
  ("resnet34_tv", "resnet34", {"width": 8, "num_classes": 5}, [2, 32, 32, 3], 1.0),
  ("resnet101_tv", "resnet101", {"width": 8, "num_classes": 4}, [2, 32, 32, 3], 1.0),
  ("resnet152_keras", "resnet152", {"width": 8, "num_classes": 3, "layout": "keras"}, [2, 32, 32, 3], 1.0),
  ("resnet_depth34_keras", "resnet", {"depth": 34, "width": 8, "num_classes": 5, "layout": "keras"},
   [2, 32, 32, 3], 1.0),
  ("video_resnet_r3d_34", "video_resnet", {"kind": "r3d", "depth": 34, "width": 8, "num_classes": 5},
   [2, 4, 32, 32, 3], 1.0),
  ("efficientnet_variant_b5", "efficientnet", {"variant": "b5", "width_mult": 0.25, "depth_mult": 0.25,
                                              "num_classes": 5}, [2, 32, 32, 3], 1.0),
  *((f"efficientnet_b{i}", f"efficientnet_b{i}", {"width_mult": 0.25, "depth_mult": 0.25, "num_classes": 5},
     [2, 32, 32, 3], 1.0) for i in range(1, 8)),
  ("x3d_small", "x3d", {"width": 8, "blocks": [2, 2, 2, 1], "head_dim": 32, "num_classes": 5}, [2, 4, 32, 32, 3],
   1.0),
  # every ECG module on (48 px: the pyramid upsamples 2 -> 3 -> 6 -> 12, odd sizes included); then all of them off
  ("ecg_resnet50_default", "ecg_resnet50", {"width": 8, "num_classes": 5}, [2, 48, 48, 3], 1.0),
  ("ecg_resnet18_all_off", "ecg_resnet", {"depth": 18, "width": 8, "num_classes": 5, "multiscale": False,
                                          "pyramid": False, "attention": False, "calibration": False,
                                          "fusion": False}, [2, 32, 32, 3], 1.0),
  # the key-frame MLP head with the image backbone it is exported with (a (B, D) input skips the backbone)
  ("feature_mlp_resnet18", "feature_mlp", {"backbone": "resnet18", "backbone_kwargs": {"width": 8},
                                           "hidden": [16, 8], "num_classes": 3}, [2, 32, 32, 3], 1.0),
]
#: torch-only constructor arguments per case (echojax.export.torch_kwargs_for gives them at export time)
TORCH_KWARGS = {"vit_mu8": {"image_size": [32, 48]},
                "video_vit_factorised": {"image_size": [32, 32], "num_frames": 4},
                "video_vit_joint_gap": {"image_size": [32, 24], "num_frames": 4}}
VARIABLES_SEED = 0
INPUT_SEED = 1


def case_input(shape) -> np.ndarray:
  return np.random.default_rng(INPUT_SEED).random(tuple(shape), dtype=np.float32)


def jax_output(arch: str, kwargs: dict, shape, input_scale: float) -> tuple[np.ndarray, dict]:
  """(eval output, variables) of the JAX model on the case's input."""
  import jax

  from echojax.convert import random_variables
  from echojax.models import get_model

  model = get_model(arch, **kwargs)
  x = case_input(shape)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  variables = random_variables(abstract, VARIABLES_SEED, input_scale=input_scale)
  out, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return np.asarray(out, np.float32), variables


def main(argv: list[str] | None = None) -> None:
  add_only = "--add" in (sys.argv[1:] if argv is None else argv)
  path = HERE / "parity_golden.json"
  stored = {c["id"]: c for c in json.loads(path.read_text())["cases"]} if add_only else {}
  cases = []
  for cid, arch, kwargs, shape, scale in CASES:
    if cid in stored:  # --add: keep the stored case as it is
      cases.append(stored[cid])
      continue
    out, _ = jax_output(arch, kwargs, shape, scale)
    print(f"{cid}: output {out.shape}, max |y| {np.abs(out).max():.3f}")
    cases.append({"id": cid, "arch": arch, "kwargs": kwargs, "torch_kwargs": TORCH_KWARGS.get(cid, {}),
                  "input_shape": shape, "input_scale": scale,
                  "variables_seed": VARIABLES_SEED, "input_seed": INPUT_SEED,
                  "output": np.round(out.astype(np.float64), 7).tolist()})
  doc = {"about": "fixed-seed JAX eval outputs guarding the echojax -> echoforge conversion; regenerate with "
                  "python tests/golden/make_golden.py (only when a model change is intended)",
         "cases": cases}
  path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
  main()
