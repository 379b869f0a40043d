"""Table: EF classification (reduced EF < 50 vs EF >= 50) on EchoNet-Dynamic, ResNet18 and ResNet152 at 28 / 56 /
112 px, unweighted and class-weighted: Train / Val / Test accuracy, test AUROC and AUPRC, bootstrap 95% CIs,
beside the published figures.

    python -m launch.sweep ef_classification_table --local --variant demo    # phantoms, reduced models, 12 runs
    python -m launch.sweep ef_classification_table --local --variant full    # the recipe (data.data_dir: real data)
    python -m launch.sweep ef_classification_table --sky --variant full --bucket gs://B/sweeps --accelerators H100:1

Each run is ``ef_classification:model=<m>,size=<s>[,weighted]`` (experiments/ef_classification.py: a 2D ResNet
per frame, logits averaged over the clip), evaluated on train, val and test with every clip of a video. The
publication lists ResNet152 without the weighted rows; this table has all twelve cells. Its parameter counts
(about 66.35M and 236.19M trainable) are not those of this per-frame model (11.2M and 58.1M with a 2-class head):
the README (EF classification table) says which architecture those counts imply and why the reproduction differs.
"""

from __future__ import annotations

from launch.tables import Table, lookup

MODELS = ("resnet18", "resnet152")
SIZES = (28, 56, 112)
# (model, size, weighted) -> Train Acc, Val Acc, Test Acc, AUROC, AUPRC as published
PUBLISHED = {
    ("resnet18", 28, False): (0.97, 0.87, 0.85, 0.87, 0.83), ("resnet18", 56, False): (0.93, 0.87, 0.87, 0.90, 0.87),
    ("resnet18", 112, False): (0.92, 0.88, 0.87, 0.90, 0.88), ("resnet18", 28, True): (0.94, 0.83, 0.81, 0.85, 0.80),
    ("resnet18", 56, True): (0.92, 0.86, 0.85, 0.90, 0.86), ("resnet18", 112, True): (0.94, 0.88, 0.86, 0.88, 0.86),
    ("resnet152", 28, False): (0.87, 0.86, 0.88, 0.88, 0.72),
    ("resnet152", 56, False): (0.92, 0.87, 0.86, 0.89, 0.75),
    ("resnet152", 112, False): (0.98, 0.86, 0.85, 0.84, 0.68),
}


def _cells():
  return [(m, s, w) for m in MODELS for w in (False, True) for s in SIZES]


def _name(m, s, w):
  return f"{m}_{s}{'_w' if w else ''}"


def get_sweep(variant: str) -> dict:
  runs = [{"name": _name(m, s, w), "arg": f"model={m},size={s}" + (",weighted" if w else ""), "overrides": {},
           "x": _name(m, s, w)} for m, s, w in _cells()]
  return {"config": "ef_classification:{variant}", "runs": runs, "metric": "metrics.auroc",
          "extra_metrics": ["metrics.accuracy", "metrics.auprc"], "x_label": "model / input size",
          "split": "test", "splits": ["train", "val", "test"]}


def table(runs, sweep) -> Table:
  cell = {(m, s, w): _name(m, s, w) for m, s, w in _cells()}
  by_name = {r.name: r for r in runs}
  rows = []
  for key, name in cell.items():
    run = by_name.get(name)
    if run is None:  # ECHOJAX_SWEEP_RUNS kept other runs
      continue
    m, s, w = key
    test = run.metrics("test")
    pub = PUBLISHED.get(key)
    rows.append([f"{m} {s}x{s}{' (w)' if w else ''}", lookup(run.metrics("train"), "accuracy"),
                 lookup(run.metrics("val"), "accuracy"), lookup(test, "accuracy"), lookup(test, "auroc"),
                 lookup(test, "auprc"), " / ".join(f"{v:.2f}" for v in pub) if pub else "not published"])
  return Table(title=f"EF classification, EF < 50 vs >= 50 ({sweep['variant']} variant; AUROC and AUPRC on test; "
                     "bootstrap 95% CIs)",
               header=["model, input size", "Train Acc", "Val Acc", "Test Acc", "AUROC", "AUPRC",
                       "published (Train / Val / Test / AUROC / AUPRC)"],
               rows=rows, plot=["Test Acc", "AUROC", "AUPRC"], ylabel="value",
               notes=["(w) = class-weighted cross-entropy (weights n / (2 n_c) from the train split)",
                      "positive class = reduced EF (EF < 50); every clip of a video averaged"])
