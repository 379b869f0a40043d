"""Table: standard view classification (11 views), image vs video models: test micro-F1 (= accuracy for
single-label classification) and macro-F1 of EfficientNet-B2 on still frames and on ECG-phase frames and of the
seven video models, each with its bootstrap 95% CI, beside the published figures.

    python -m launch.sweep view_models --local --variant demo    # reduced models on 32-64 px phantoms, CPU minutes
    python -m launch.sweep view_models --local --variant full    # the full recipes (real data: data.data_dir)
    python -m launch.sweep view_models --print --variant full    # the commands, for a cluster

Each run is its own experiment config (``experiments/view_*.py``, ``video_vit.py``) in the sweep's variant. The
publication reports two numbers: 92.4 % micro-F1 for the EfficientNet-B2 image model (trained on frames picked by
ECG phase) and 95.1 % for EfficientNet-B2 frames + dilated temporal CNN (here ``view_video_spatiotemporal``, whose
temporal stream is that TCN, with the dynamic spatial/temporal weighting).
"""

from __future__ import annotations

from launch.tables import Table, lookup

# (run name, approach, model, config, config arguments, published micro-F1)
MODELS = [
    ("effnetb2_stills", "image", "EfficientNet-B2, still frames", "view_image_effnetb2:{variant}", "", None),
    ("effnetb2_ecg_phases", "image", "EfficientNet-B2, frames picked by ECG phase", "view_image_effnetb2:{variant}",
     "ecg_phases", 0.924),
    ("cnn_lstm", "video", "CNN-LSTM (B2 frames, ECG phases)", "view_video_cnn_lstm:{variant}", "", None),
    ("r2plus1d", "video", "(2+1)D CNN (R(2+1)D-18)", "view_video_resnet3d:{variant}", "model=r2plus1d_18", None),
    ("r3d", "video", "residual 3D CNN (R3D-18)", "view_video_resnet3d:{variant}", "", None),
    ("conv3d", "video", "plain 3D CNN", "view_video_3dcnn:{variant}", "", None),
    ("mhsa", "video", "self-attention over B2 frames (ECG phases)", "view_video_mhsa:{variant}", "", None),
    ("video_vit", "video", "video ViT (factorised attention)", "video_vit:{variant}", "", None),
    ("tcn", "video", "B2 frames + dilated temporal CNN, dynamic weighting (ECG phases)",
     "view_video_spatiotemporal:{variant}", "", 0.951),
]


def get_sweep(variant: str) -> dict:
  runs = [{"name": name, "config": config, "arg": arg, "overrides": {}, "x": name}
          for name, _, _, config, arg, _ in MODELS]
  return {"config": "view_video_spatiotemporal:{variant}", "runs": runs, "metric": "metrics.micro_f1",
          "extra_metrics": ["metrics.macro_f1"], "x_label": "model", "split": "test"}


def table(runs, sweep) -> Table:
  info = {name: (approach, model, published) for name, approach, model, _, _, published in MODELS}
  rows = []
  for run in runs:
    approach, model, published = info[run.name]
    m = run.metrics(sweep["split"])
    rows.append([run.name, approach, model, lookup(m, "micro_f1"), lookup(m, "macro_f1"), m.get("n"),
                 "" if published is None else f"{published:.3f}"])
  return Table(title=f"View classification, image vs video models ({sweep['variant']} variant, "
                     f"{sweep['split']} split, bootstrap 95% CIs)",
               header=["run", "approach", "model", "micro-F1", "macro-F1", "cines", "published micro-F1"],
               rows=rows, plot=["micro-F1", "macro-F1"], ylabel="F1",
               notes=["micro-F1 = accuracy for single-label classification; chance = 1/11 = 0.091",
                      "the demo's models are reduced (width, depth, 32 px cines, 64 px stills): they show that each "
                      "path learns, not how the models rank at full size"])
