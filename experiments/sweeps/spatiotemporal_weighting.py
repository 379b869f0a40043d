"""Sweep: spatial vs temporal weighting of the fusion model (view_video_spatiotemporal) on echo view classification.

    python -m launch.sweep spatiotemporal_weighting --local --variant smoke    # seconds per run (tests)
    python -m launch.sweep spatiotemporal_weighting --local --variant demo     # learns; a few CPU minutes per run
    python -m launch.sweep spatiotemporal_weighting --print                    # full-size commands for a cluster

Runs: ``model.kwargs.mode`` = ``fixed:w`` for w (the spatial stream's weight) in 0, 0.25, 0.5, 0.75, 1 (0 = temporal
TCN stream only, 1 = time-pooled spatial stream only), then ``learned`` (one trained global weight) and
``dynamic`` (a per-sample gate; its weights are in each run's predictions.csv as gate_0/gate_1). The metric is
test micro-F1 (``metrics.micro_f1`` of ``eval_test/metrics.json``; equals accuracy for single-label
classification); the table's x column is the fixed w or the mode name.

Ranking the settings (``compare``): every pair is compared on the same test cines by McNemar's exact test and a
paired bootstrap of the accuracy difference, seeds pooled, Holm-adjusted over the 21 pairs (``paired.md``;
launch/tables.py). The demo repeats every setting for seeds 0, 1, 2 on 40 phantoms per view (66 test cines, so
198 paired scores per setting) instead of the view demos' 16 (33 test cines, one seed), where the seven settings
differed by 1-4 cines; the full variant keeps the real data and repeats three seeds.

``ECHOJAX_SWEEP_RUNS`` (comma-separated run names, e.g. ``fixed_0,dynamic``) keeps only those runs, for quick
checks (launch.sweep applies it to every sweep; the sweep test uses it).
"""

from __future__ import annotations

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SEEDS = (0, 1, 2)
DEMO_PHANTOMS_PER_VIEW = 40


def get_sweep(variant: str) -> dict:
  more = {"data.synthetic_num": DEMO_PHANTOMS_PER_VIEW} if variant == "demo" else {}
  runs = [{"name": f"fixed_{w:g}", "overrides": {"model.kwargs.mode": f"fixed:{w:g}", **more}, "x": f"{w:g}"}
          for w in WEIGHTS]
  runs += [{"name": m, "overrides": {"model.kwargs.mode": m, **more}, "x": m} for m in ("learned", "dynamic")]
  return {"config": "view_video_spatiotemporal:{variant}", "runs": runs, "metric": "metrics.micro_f1",
          "extra_metrics": ["metrics.macro_f1"], "x_label": "spatial weight w (fixed) / mode", "split": "test",
          "seeds": None if variant == "smoke" else list(SEEDS), "compare": True}


def table(runs, sweep):
  """One row per setting: test micro-F1 pooled over the seeds, with its interval and the per-seed values."""
  from launch.tables import seed_pooled_table
  return seed_pooled_table(runs, sweep["split"], "Spatial / temporal weighting of the fusion model")
