"""Worker for tests/test_pipeline_multiprocess.py: ONE process of a multi-process data-loading job.

    python tests/helpers/workers/pipeline_worker.py '{"data": {...}, "split": "train", "train": false,
        "process_index": 0, "process_count": 2, "steps": null, "out": "indices0.json"}'

Builds ``make_loader`` exactly as a host of a multi-host job would (its own process index/count) and writes the
``index`` of every valid row it yields, per batch, plus batch shapes, as JSON.
"""

from __future__ import annotations

import json
import sys

from echojax.data.pipeline import make_loader


def main() -> None:
  args = json.loads(sys.argv[1])
  loader = make_loader(args["data"], args["split"], train=args["train"], seed=args.get("seed", 0),
                       process_index=args["process_index"], process_count=args["process_count"])
  steps = args.get("steps") or (None if not args["train"] else loader.steps_per_epoch)
  batches, shapes = [], None
  for i, batch in enumerate(loader):
    if steps is not None and i >= steps:
      break
    shapes = {k: list(v.shape) for k, v in batch.items()}
    batches.append(batch["index"][batch["valid"]].tolist())
  with open(args["out"], "w") as f:
    json.dump({"batches": batches, "shapes": shapes, "num_examples": loader.num_examples,
               "steps_per_epoch": loader.steps_per_epoch}, f)


if __name__ == "__main__":
  main()
