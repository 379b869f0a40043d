"""Prepare a dataset for training: raw folder -> TFDS array_record + report + normalisation statistics.

    python -m echojax.data.prepare NAME --manual-dir RAW --data-dir OUT [--config C] [--strict] [--overwrite]

NAME is any dataset in ``echojax.data.datasets.DATASETS`` (e.g. ``echonet_dynamic``). The command runs the
dataset's TFDS builder (``manual_dir`` = the raw folder) with a progress bar, then prints a summary (examples per
split, skipped rows and notes grouped by reason with a count and a few examples each) and writes two files into
the prepared version folder ``OUT/<name>/<config>/<version>/``:

- ``echojax_report.json``: the builder's SkipReport (counts, skipped rows, notes);
- ``echojax_stats.json``: per-channel mean/std of the train split in [0, 255] units (``{"mean": [..], "std": [..]}``),
  computed on an evenly spaced subsample of records and frames; the pipeline normalises with it;
- for video datasets, ``<name>-<split>.frames`` + ``.meta.npz`` + ``.frames.json``: a memory-mapped copy of the
  records (:mod:`echojax.data.framestore`) so clip reads touch only the clip's frames (``--no-frame-store`` skips).

Bad rows are skipped by default; ``--strict`` stops at the first one with a message naming the file, row and reason.
Builders that take a ``strict`` keyword and expose ``.report`` (a SkipReport) get full reporting; others still work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from echojax.data.datasets import DATASETS
from echojax.data.report import REPORT_NAME, SkipReport
from echojax.data.tfds_compat import tfds_spill_without_tensorflow
from echojax.errors import UserError, cli_main

REPORT_FILE = REPORT_NAME  # echojax_report.json
STATS_FILE = "echojax_stats.json"


def builder_class(name: str):
  """Import the dataset's builder module (registering it) and return the TFDS builder class."""
  import tensorflow_datasets as tfds

  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
  info = DATASETS[name]
  try:
    importlib.import_module(info.builder_module)
  except ModuleNotFoundError as e:
    raise UserError(f"dataset {name!r}: its builder module {info.builder_module} is not available ({e})") from None
  return tfds.builder_cls(name)


def make_builder(name: str, data_dir: str | Path, config: str | None = None, strict: bool = False):
  """Construct the builder for ``name`` / ``config`` writing under ``data_dir`` (config checked against the list)."""
  cls = builder_class(name)
  config = config or DATASETS[name].default_config
  if config is not None:
    config = str(config)  # an override --config.data.builder_config=448 arrives as the int 448
  names = [c.name for c in (cls.BUILDER_CONFIGS or [])]
  if names and config is not None and config not in names:
    raise UserError(f"dataset {name!r} has no config {config!r} (option --config); available: {', '.join(names)}")
  kwargs = dict(data_dir=str(data_dir))
  if config is not None:
    kwargs["config"] = config
  try:
    return cls(strict=strict, **kwargs)
  except TypeError:  # a builder without the strict keyword
    return cls(**kwargs)


def compute_stats(source, feature: str, max_records: int = 256, frames_per_record: int = 16) -> dict:
  """Per-channel mean/std ([0, 255] units) over an evenly spaced subsample of records (and frames for videos)."""
  n = len(source)
  if n == 0:
    raise UserError("the train split is empty, so no normalisation statistics can be computed; check the "
                    "prepare summary for the skipped rows")
  idx = np.unique(np.linspace(0, n - 1, min(n, max_records)).round().astype(int))
  s = s2 = None
  count = 0
  frames_used = 0
  for i in idx:
    x = np.asarray(source[int(i)][feature])
    if x.ndim == 4:  # video (T, H, W, C): evenly spaced frames
      x = x[np.unique(np.linspace(0, len(x) - 1, min(len(x), frames_per_record)).round().astype(int))]
      frames_used += len(x)
    else:
      frames_used += 1
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)
    s = x.sum(0) if s is None else s + x.sum(0)
    s2 = (x ** 2).sum(0) if s2 is None else s2 + (x ** 2).sum(0)
    count += len(x)
  mean = s / count
  std = np.sqrt(np.maximum(s2 / count - mean ** 2, 0.0))
  std = np.where(std > 1e-6, std, 1.0)
  return {"mean": mean.round(4).tolist(), "std": std.round(4).tolist(), "feature": feature,
          "records": int(len(idx)), "frames": int(frames_used), "units": "[0, 255]"}


def _stats_feature(builder) -> str:
  keys = list(builder.info.features.keys())
  for k in ("video", "image"):
    if k in keys:
      return k
  raise UserError(f"dataset {builder.name} has neither a 'video' nor an 'image' feature to compute statistics on")


def _check_manual_outside_version(manual: Path, version_dir: Path) -> None:
  """UserError when the raw folder is the prepared version folder or inside it: preparing (re)creates that
  folder from scratch, which would delete the raw data."""
  m, v = manual.resolve(), version_dir.resolve()
  if m == v or v in m.parents:
    raise UserError(f"--manual-dir {manual} lies inside the folder that preparation writes ({version_dir}), which is "
                    f"removed and rebuilt: nothing was touched. Move the raw folder elsewhere or pass another "
                    f"--data-dir (the prepared data goes to <data-dir>/<name>/<config>/<version>)")


def prepare(name: str, manual_dir: str | Path, data_dir: str | Path, config: str | None = None,
            strict: bool = False, overwrite: bool = False, verbose: bool = True, frame_store: bool = True) -> Path:
  """Build ``name`` from ``manual_dir`` into ``data_dir``; write report + stats; return the version folder.

  An already prepared version folder is reused (its summary is printed again) unless ``overwrite``.
  ``frame_store`` also writes a memory-mapped copy of each split's frames (:mod:`echojax.data.framestore`).
  """
  import tensorflow_datasets as tfds

  builder = make_builder(name, data_dir, config, strict)
  manual = Path(manual_dir).expanduser()
  version_dir = Path(builder.data_dir)
  _check_manual_outside_version(manual, version_dir)  # before anything is written or removed
  if manual.exists() and not manual.is_dir():
    raise UserError(f"--manual-dir {manual} is a file, not a folder: pass the folder that holds it "
                    f"(e.g. --manual-dir {manual.parent})")
  if not manual.is_dir():
    what = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", "") or ""
    raise UserError(f"--manual-dir {manual} does not exist. {what}".strip())
  check = getattr(builder, "check_manual_dir", None)  # dataset-specific layout check, before TFDS starts
  if check is not None:
    check(manual)
  elif not any(manual.iterdir()):
    what = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", "") or ""
    raise UserError(f"--manual-dir {manual} is empty. {what}".strip())
  done = (version_dir / "dataset_info.json").exists() and (version_dir / STATS_FILE).exists()
  if done and not overwrite:
    if verbose:
      print(f"{name} ({builder.builder_config.name if builder.builder_config else 'default'}) is already prepared "
            f"at {version_dir}; pass --overwrite to rebuild it")
      if (version_dir / REPORT_FILE).exists():
        print(_summary_from_json(json.loads((version_dir / REPORT_FILE).read_text()), version_dir / REPORT_FILE))
    return version_dir
  if version_dir.exists():  # half-finished (no stats) or --overwrite: start clean
    shutil.rmtree(version_dir)
  dl_config = tfds.download.DownloadConfig(manual_dir=str(manual))
  tfds_spill_without_tensorflow()  # splits over 1 GB (real EchoNet) spill to disk without TensorFlow
  try:
    builder.download_and_prepare(download_config=dl_config)
  except UserError:
    raise
  except Exception as e:  # TFDS may wrap a UserError raised inside a generator: unwrap it
    cause = e
    while cause is not None and not isinstance(cause, UserError):
      cause = cause.__cause__ or cause.__context__
    if cause is not None:
      raise UserError(str(cause)) from None
    raise
  report = getattr(builder, "report", None)
  if not isinstance(report, SkipReport):
    report = SkipReport()
    for split, info in builder.info.splits.items():
      report.wrote(split, info.num_examples)
  splits = list(builder.info.splits.keys())
  stats_split = "train" if "train" in splits else splits[0]
  if stats_split != "train":  # said, and recorded with the stats (their "split" field), not passed off as train's
    report.note(name, f"no train split: normalisation statistics computed from the {stats_split} split")
  report.save(version_dir / REPORT_FILE)
  stats = compute_stats(builder.as_data_source(split=stats_split), _stats_feature(builder))
  stats["split"] = stats_split
  if frame_store and stats["feature"] == "video":  # memmap copy of the frames so clip reads skip riegeli
    from echojax.data.framestore import write_frame_store

    for split in splits:
      write_frame_store(version_dir, builder.name, split, builder.as_data_source(split=split))
  (version_dir / STATS_FILE).write_text(json.dumps(stats, indent=2))  # last: marks the preparation complete
  if verbose:
    print(f"\nprepared {name} at {version_dir}")
    print(report.summary(saved_as=version_dir / REPORT_FILE))
    print(f"{stats_split} statistics ({stats['frames']} frames of {stats['records']} records): mean {stats['mean']}, "
          f"std {stats['std']}")
    print(f"wrote {version_dir / REPORT_FILE} and {version_dir / STATS_FILE}")
  return version_dir


def _summary_from_json(d: dict, saved_as: Path | None = None) -> str:
  """Rebuild a SkipReport from echojax_report.json and summarise it."""
  r = SkipReport()
  for k, v in d.get("counts", {}).items():
    r.wrote(k, v)
  for item in d.get("skipped", []):
    r.skip(item["file"], item["reason"], item.get("row"))
  for item in d.get("notes", []):
    r.note(item["file"], item["reason"], item.get("row"))
  return r.summary(saved_as=saved_as)


def ensure_synthetic(name: str = "echonet_dynamic", config: str | None = None, num: int | None = None,
                     seed: int = 0, *, verbose: bool = True):
  """Generate + prepare the synthetic phantom set of ``name`` once and return its TFDS ``data_dir``.

  Layout: ``<cache>/synthetic/<name>-n<num>-s<seed>/raw`` (the phantom raw folder, shared by all configs) and
  ``.../tfds`` (the prepared data, one sub-folder per builder config). Each step writes a marker file when it
  completes (``raw/.echojax_complete``, ``tfds/.echojax_complete-<config>``); a step without its marker (an
  interrupted run) is redone from scratch. A file lock keeps concurrent callers from building the same set twice.
  The trainer calls this when ``config.data.data_dir`` is empty.
  """
  import fcntl
  import importlib
  import shutil
  import sys

  from echojax import paths
  from echojax.errors import UserError

  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r} for synthetic data; available: {', '.join(sorted(DATASETS))}")
  info = DATASETS[name]
  config = config or info.default_config
  num = num if num is not None else info.synthetic_num
  root = paths.synthetic_dir(name, f"n{num if num is not None else 'default'}-s{seed}")
  raw, tfds_dir = root / "raw", root / "tfds"
  raw_done, tfds_done = raw / ".echojax_complete", tfds_dir / f".echojax_complete-{config}"
  if verbose:
    print(f"no data_dir configured: using synthetic {info.pretty or name} phantoms at {root}", file=sys.stderr,
          flush=True)
  if tfds_done.exists():
    return tfds_dir
  root.mkdir(parents=True, exist_ok=True)
  with open(root.parent / f"{root.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if tfds_done.exists():  # another process finished it while we waited
        return tfds_dir
      if not raw_done.exists():
        shutil.rmtree(raw, ignore_errors=True)
        from echojax.data.synthetic import get_generator

        gen = get_generator(info.generator)
        if verbose:
          print(f"generating {num if num is not None else 'the default number of'} {name} phantoms (seed {seed}) "
                f"into {raw} (once)", file=sys.stderr, flush=True)
        if num is None:
          gen.generate(raw, seed=seed)
        else:
          gen.generate(raw, num, seed)
        raw_done.write_text("complete\n")
      importlib.import_module(info.builder_module)
      # overwrite=True removes only this config's version folder, so an interrupted preparation restarts
      # cleanly and other prepared configs stay
      prepare(name, raw, tfds_dir, config, strict=False, overwrite=True, verbose=verbose)
      tfds_done.parent.mkdir(parents=True, exist_ok=True)
      tfds_done.write_text("complete\n")
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return tfds_dir


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m echojax.data.prepare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("name", help=f"dataset: one of {', '.join(sorted(DATASETS))}")
  p.add_argument("--manual-dir", required=True, help="the raw dataset folder (as downloaded, or a phantom set)")
  p.add_argument("--data-dir", required=True, help="where to write the prepared TFDS data")
  p.add_argument("--config", default=None, help="builder config (echonet_dynamic: 112 (default), 56, 28)")
  p.add_argument("--strict", action="store_true", help="fail on the first bad row instead of skipping it")
  p.add_argument("--overwrite", action="store_true", help="rebuild even if already prepared")
  p.add_argument("--no-frame-store", action="store_true",
                 help="skip the memory-mapped frame copy (saves disk; clip reads then go through array_record)")
  return p


@cli_main
def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
  if args.name not in DATASETS:
    raise UserError(f"unknown dataset {args.name!r}; available: {', '.join(sorted(DATASETS))}")
  prepare(args.name, args.manual_dir, args.data_dir, args.config, args.strict, args.overwrite,
          frame_store=not args.no_frame_store)


if __name__ == "__main__":
  main()
