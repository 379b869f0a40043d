"""Data-path benchmark: clips/s and peak RSS of the prepared grain pipeline vs decoding the AVI per sample.

    python benchmarks/data_pipeline.py [--num-videos 2000] [--clips 256] [--frames 32] [--period 2]
                                       [--batch-size 16] [--workdir DIR] [--workers 0] [--page-cache warm|as-is]

Steps (same machine, same run):

1. a synthetic EchoNet-Dynamic phantom set of ``--num-videos`` videos (112x112, real raw layout) is generated and
   prepared once into ``--workdir`` (default ``<echojax cache>/benchmarks/echonet-<N>``; reused when present);
2. **prepared**: ``make_loader`` on the train split (random 32-frame clips, period 2, pad-12 shift augmentation,
   ``--normalize device``: uint8 batches as echonet_ef trains, or ``host``: normalised float32) reads each clip's
   frames from the prepared frame store straight into the batch;
3. **decode per sample**: what echonet/dynamic's dataset does per item: load the whole AVI with OpenCV, convert the
   whole video to float32 and normalise it, then sample the clip (random video each time);
4. **read**: only the storage read inside (2): the uint8 frames of a random clip, no float/normalise/batching;
5. **stream**: one pass over every video of every split with the prepared pipeline (eval loaders, one clip per
   video), i.e. the whole ``--num-videos`` set.

Each measurement runs in its own subprocess, so its peak RSS (``VmHWM`` from /proc/self/status, the high-water
mark of resident memory, no psutil) is its own. The table prints clips/s, the speed-up over per-sample decoding and
the peak RSS; the targets are >= 20x and < 2 GB for the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402


def peak_rss_mb() -> float:
  """Peak resident set size of this process in MiB (VmHWM; falls back to ru_maxrss)."""
  try:
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------------------------------------
# data set-up


def prepare(workdir: Path, num_videos: int, seed: int) -> Path:
  """Generate the phantom set and prepare it (shards, frame store, train-split stats) once; returns the data_dir.
  ``echojax.data.prepare`` reuses a finished preparation."""
  from echojax.data.prepare import prepare as prepare_dataset

  raw, data = workdir / "raw", workdir / "data"
  if not (raw / "FileList.csv").exists():
    from echojax.data.synthetic import echonet as gen

    print(f"generating {num_videos} phantom videos into {raw}", flush=True)
    gen.generate(raw, num_videos, seed)
  prepare_dataset("echonet_dynamic", raw, data, config="112")
  return data


def warm_page_cache(workdir: Path, data_dir: Path) -> None:
  """Read the prepared frame stores and the raw AVIs once, so both methods are timed from the page cache.

  Without this the first clips come from disk: on the dev machine a 2,000-video set (6.8 GB of train frames)
  right after preparing, or after other jobs evicted it, read at 3-4 ms/clip instead of 0.3 ms."""
  files = sorted(Path(data_dir).rglob("*.frames")) + sorted((Path(workdir) / "raw" / "Videos").glob("*.avi"))
  t, total = time.perf_counter(), 0
  buf = bytearray(16 << 20)
  for f in files:
    with open(f, "rb", buffering=0) as fh:
      while n := fh.readinto(buf):
        total += n
  print(f"page cache warmed: {total / 2**30:.1f} GiB read in {time.perf_counter() - t:.1f}s "
        f"({len(files)} files)", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# measurements (each run in its own subprocess via --measure)


def measure_prepared(args) -> dict:
  from echojax.data.pipeline import make_loader

  cfg = dict(name="echonet_dynamic", data_dir=args.data_dir, builder_config="112", frames=args.frames,
             period=args.period, batch_size=args.batch_size, worker_count=args.workers, normalize=args.normalize,
             augment={"pad": 12})  # what echonet_ef trains with
  loader = make_loader(cfg, "train", train=True, seed=args.seed, process_index=0, process_count=1)
  next(loader)  # warm-up (first reads, imports)
  steps = max(1, args.clips // args.batch_size)
  t, c = time.perf_counter(), time.process_time()
  for _ in range(steps):
    b = next(loader)
  dt, dc = time.perf_counter() - t, time.process_time() - c
  assert b["video"].shape == (args.batch_size, args.frames, 112, 112, 3)
  return {"clips": steps * args.batch_size, "seconds": dt, "cpu_seconds": dc}


def measure_read(args) -> dict:
  """Only the storage read: the uint8 frames of one random clip from the prepared split (no float, no batching)."""
  from echojax.data.pipeline import open_source

  src, _ = open_source(dict(name="echonet_dynamic", data_dir=args.data_dir, builder_config="112"), "train")
  rng = np.random.default_rng(args.seed)
  span = (args.frames - 1) * args.period + 1

  def one():
    rec = src[int(rng.integers(len(src)))]
    video = rec["video"]
    n = video.shape[0]
    start = int(rng.integers(0, max(n - span, 0) + 1))
    idx = np.minimum(start + np.arange(args.frames) * args.period, n - 1)
    return video.take(idx) if hasattr(video, "take") else np.asarray(video)[idx]

  one()
  n = max(args.clips, 1)
  t, c = time.perf_counter(), time.process_time()
  for _ in range(n):
    clip = one()
  dt, dc = time.perf_counter() - t, time.process_time() - c
  assert clip.shape == (args.frames, 112, 112, 3)
  return {"clips": n, "seconds": dt, "cpu_seconds": dc}


def _decode_clip(path: str, frames: int, period: int, mean: np.ndarray, std: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
  """echonet/dynamic-style item: whole video -> float -> normalise whole video -> pad -> sample a clip."""
  import cv2

  cap = cv2.VideoCapture(path)
  count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
  w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
  video = np.zeros((count, h, w, 3), np.uint8)
  n = 0
  while n < count:
    ok, frame = cap.read()
    if not ok:
      break
    video[n] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    n += 1
  cap.release()
  v = video[:n].astype(np.float32)  # the whole video to float, then normalised (as the reference does)
  rows = v.reshape(-1, w * 3)  # per-channel stats tiled along W: fast numpy inner loop, a fair baseline
  rows -= np.tile(mean, w)
  rows /= np.tile(std, w)
  span = (frames - 1) * period + 1
  if n < span:
    v = np.concatenate([v, np.zeros((span - n,) + v.shape[1:], np.float32)])
  start = int(rng.integers(0, v.shape[0] - span + 1))
  return v[start:start + span:period]


def measure_decode(args) -> dict:
  import csv

  raw = Path(args.workdir) / "raw"
  with open(raw / "FileList.csv") as f:
    names = [r["FileName"] for r in csv.DictReader(f) if r["Split"].upper() == "TRAIN"]
  paths = [str(raw / "Videos" / f"{n}.avi") for n in names]
  stats = json.loads(next(Path(args.data_dir).rglob("echojax_stats.json")).read_text())
  mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
  rng = np.random.default_rng(args.seed)
  _decode_clip(paths[0], args.frames, args.period, mean, std, rng)  # warm-up
  n = max(1, args.clips // args.batch_size) * args.batch_size
  n = max(args.batch_size, n // 4)  # slow path: a quarter of the clips is plenty for a stable rate
  t, c = time.perf_counter(), time.process_time()
  for i in range(0, n, args.batch_size):
    batch = np.stack([_decode_clip(paths[int(rng.integers(len(paths)))], args.frames, args.period, mean, std, rng)
                      for _ in range(args.batch_size)])
  dt, dc = time.perf_counter() - t, time.process_time() - c
  assert batch.shape == (args.batch_size, args.frames, 112, 112, 3)
  return {"clips": n, "seconds": dt, "cpu_seconds": dc}


def measure_stream(args) -> dict:
  """Every video of every split once, through the prepared pipeline (eval loaders, one clip per video)."""
  from echojax.data.pipeline import make_loader

  cfg = dict(name="echonet_dynamic", data_dir=args.data_dir, builder_config="112", frames=args.frames,
             period=args.period, batch_size=args.batch_size, worker_count=args.workers, normalize=args.normalize)
  clips, videos = 0, 0
  t, c = time.perf_counter(), time.process_time()
  for split in ("train", "val", "test"):
    loader = make_loader(cfg, split, train=False, seed=args.seed, process_index=0, process_count=1)
    videos += loader.num_examples
    for b in loader:
      clips += int(b["valid"].sum())
  dt, dc = time.perf_counter() - t, time.process_time() - c
  assert clips == videos
  return {"clips": clips, "seconds": dt, "cpu_seconds": dc}


MEASURES = {"prepared": measure_prepared, "read": measure_read, "decode": measure_decode, "stream": measure_stream}


def run_measure(name: str, args) -> dict:
  cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--data-dir", str(args.data_dir),
         "--workdir", str(args.workdir), "--clips", str(args.clips), "--frames", str(args.frames), "--period",
         str(args.period), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--workers",
         str(args.workers), "--normalize", args.normalize]
  print(f"measuring {name} ...", flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  if proc.returncode != 0:
    raise RuntimeError(f"{name} measurement failed:\n{proc.stderr[-4000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


@cli_main
def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--num-videos", type=int, default=2000, help="phantom videos in the set (default 2000)")
  p.add_argument("--clips", type=int, default=256, help="clips timed for the prepared pipeline (default 256)")
  p.add_argument("--frames", type=int, default=32)
  p.add_argument("--period", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--normalize", choices=["device", "host"], default="device",
                 help="device (uint8 batches, normalised in the jitted step; what echonet_ef uses) or host")
  p.add_argument("--workers", type=int, default=0, help="grain worker processes (default 0 = in-process)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workdir", default=None, help="where the set is generated/prepared (reused when present)")
  p.add_argument("--skip-stream", action="store_true", help="skip the whole-set streaming pass")
  p.add_argument("--page-cache", choices=["warm", "as-is"], default="warm",
                 help="warm (default): read the frame stores and AVIs once before timing, so both methods run from "
                      "memory; as-is: time whatever the page cache holds (cold data is disk-bound)")
  p.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
  p.add_argument("--data-dir", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.measure:
    res = MEASURES[args.measure](args)
    res["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(res))
    return
  if args.num_videos < 10:
    raise UserError("--num-videos must be >= 10 (the phantom splits need a few videos each)")
  from echojax import paths

  args.workdir = Path(args.workdir or paths.cache_dir() / "benchmarks" / f"echonet-{args.num_videos}")
  t = time.perf_counter()
  args.data_dir = prepare(args.workdir, args.num_videos, args.seed)
  print(f"data ready in {time.perf_counter() - t:.0f}s: {args.data_dir}", flush=True)
  if args.page_cache == "warm":
    warm_page_cache(args.workdir, args.data_dir)
  results = {"prepared": run_measure("prepared", args), "read": run_measure("read", args),
             "decode": run_measure("decode", args)}
  if not args.skip_stream:
    results["stream"] = run_measure("stream", args)
  base = results["decode"]["clips"] / results["decode"]["seconds"]
  base_cpu = results["decode"]["cpu_seconds"] / results["decode"]["clips"]
  print()
  print(f"{args.num_videos} phantom videos, {args.frames}-frame 112x112 clips (period {args.period}), batch "
        f"{args.batch_size}, grain workers {args.workers}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, page cache {args.page_cache}")
  print(f"{'method':<34}{'clips':>7}{'seconds':>9}{'clips/s':>9}{'speed-up':>10}{'CPU ms/clip':>13}"
        f"{'CPU speed-up':>14}{'peak RSS MB':>13}")
  labels = {"prepared": "prepared (grain, train clips)", "read": "  of which: uint8 clip read only",
            "decode": "AVI decode per sample (echonet)",
            "stream": f"stream all {args.num_videos} videos"}
  for k, r in results.items():
    rate = r["clips"] / r["seconds"]
    cpu = r["cpu_seconds"] / r["clips"]
    print(f"{labels[k]:<34}{r['clips']:>7}{r['seconds']:>9.2f}{rate:>9.1f}{rate / base:>9.1f}x{cpu * 1000:>13.2f}"
          f"{base_cpu / cpu:>13.1f}x{r['peak_rss_mb']:>13.0f}")
  speedup = results["prepared"]["clips"] / results["prepared"]["seconds"] / base
  cpu_speedup = base_cpu / (results["prepared"]["cpu_seconds"] / results["prepared"]["clips"])
  print(f"\nprepared vs per-sample decoding: {speedup:.1f}x wall, {cpu_speedup:.1f}x CPU time (target >= 20x): "
        f"{'OK' if speedup >= 20 else 'MISSED'}")
  if "stream" in results:
    rss = results["stream"]["peak_rss_mb"]
    print(f"stream peak RSS: {rss:.0f} MB (target < 2048 MB): {'OK' if rss < 2048 else 'MISSED'}")

if __name__ == "__main__":
  main()
