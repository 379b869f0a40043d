"""ECG-assisted multi-phase image sampling (``view_image_effnetb2:ecg_phases``): the ``ecg_phase_frame`` sampler
picks one cine frame at an ECG-derived cardiac phase (ED in evaluation; a random cycle and phase in training,
deterministic per seed), the image preset turns it into an ``image`` batch exactly like a still, and the config
trains end to end through ``python -m echojax.train``."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from echojax.config import load_config
from echojax.data import pipeline
from echojax.data.ecg import PhaseFrameSampler, record_phases
from echojax.data.pipeline import build_loader
from echojax.data.samplers import PHASE_FRAME, PHASE_FRAME_K

S = 8
FPS = 30.0
R_PEAKS = np.array([4, 24, 44, 64, 84], np.int32)  # ED frames: a regular 90 bpm rhythm at 30 fps
NUM_FRAMES = 100


def cine(i: int = 0) -> dict:
  """An ``echo_views`` videos record with stored R peaks; frame t has pixel value t (so a batch tells which frame
  was taken); record i's peaks are shifted by i frames."""
  v = np.arange(NUM_FRAMES, dtype=np.uint8)[:, None, None, None] * np.ones((1, S, S, 3), np.uint8)
  return {"video": v, "num_frames": np.int32(NUM_FRAMES), "fps": np.float32(FPS), "r_peaks": R_PEAKS + i,
          "ecg": np.zeros(0, np.float32), "ecg_fs": np.float32(0.0), "label": np.int64(i % 11)}


class Cines:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return cine(i)


def test_phase_frame_is_ed_in_evaluation_and_a_phase_of_a_random_cycle_in_training():
  sampler = pipeline.get_frame_sampler(PHASE_FRAME)
  rec = cine()
  ed = record_phases(rec).ed_frames
  es = record_phases(rec).es_frames
  assert list(ed) == list(R_PEAKS)
  # evaluation: one frame, the R-peak (ED) frame of the first cycle, whatever was drawn before
  np.testing.assert_array_equal(sampler(rec, None), [R_PEAKS[0]])
  assert sampler(rec, None).shape == (1,)
  # training: one of the 2K phase frames that the phase sampler gives for the same generator
  got = []
  for seed in range(200):
    idx = sampler(rec, np.random.default_rng(seed))
    assert idx.shape == (1,)
    assert idx[0] in PhaseFrameSampler(PHASE_FRAME_K)(rec, np.random.default_rng(seed))
    np.testing.assert_array_equal(sampler(rec, np.random.default_rng(seed)), idx)  # deterministic per seed
    got.append(int(idx[0]))
  got = np.asarray(got)
  assert got.min() >= R_PEAKS[0] and got.max() < R_PEAKS[-1]  # inside complete cycles
  assert set(R_PEAKS[:-1]) <= set(got)  # ED of every cycle
  assert set(es[es < R_PEAKS[-1]]) <= set(got)  # ES of every cycle
  assert len(set(got) - set(ed) - set(es)) > 20  # and the phases between


def test_phase_frame_becomes_an_image_batch_like_a_still():
  """Image preset over cines: batch key ``image`` (B,S,S,C), float32, normalised with the given stats; evaluation
  shows the ED frames, training draws differ per seed and repeat for the same seed."""
  stats = (np.array([2.0, 2.0, 2.0], np.float32), np.array([4.0, 4.0, 4.0], np.float32))
  cfg = dict(preset="image", batch_size=4, frame_sampler=PHASE_FRAME, targets=["label"])
  ev = next(build_loader(Cines(4), stats, cfg, "val", train=False, seed=0, process_index=0, process_count=1))
  assert sorted(ev) == ["image", "index", "label", "valid"] and ev["image"].shape == (4, S, S, 3)
  assert ev["image"].dtype == np.float32
  np.testing.assert_allclose(ev["image"][:, 0, 0, 0] * 4.0 + 2.0, R_PEAKS[0] + ev["index"])  # ED of each cine

  def train_frames(seed):
    loader = build_loader(Cines(4), stats, cfg, "train", train=True, seed=seed, process_index=0, process_count=1)
    b = [next(loader) for _ in range(5)]
    return np.concatenate([x["image"][:, 0, 0, 0] * 4.0 + 2.0 for x in b]), np.concatenate([x["index"] for x in b])

  (a, ia), (b, _), (c, _) = train_frames(1), train_frames(1), train_frames(2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  rel = np.round(a).astype(int) - ia  # frame relative to record i's shifted peaks
  assert rel.min() >= R_PEAKS[0] and rel.max() < R_PEAKS[-1]


def _input_shape(c):
  side = c.data.size or {"images": 112, "images_224": 224}[c.data.builder_config]
  return (c.data.batch_size, side, side, 3)


@pytest.mark.parametrize("variant", ["smoke", "demo", None])
def test_ecg_phases_config_reads_the_cines_and_feeds_the_stills_shape(variant):
  stills = load_config("view_image_effnetb2" + (f":{variant}" if variant else ""))
  phases = load_config("view_image_effnetb2:ecg_phases" + (f",{variant}" if variant else ""))
  assert stills.data.frame_sampler is None and stills.data.builder_config.startswith("images")
  assert phases.data.frame_sampler == PHASE_FRAME
  assert phases.data.builder_config == ("videos" if variant is None else "videos_64")
  assert phases.data.preset == "image" and phases.data.input_key == "image"
  assert _input_shape(phases) == _input_shape(stills)
  assert phases.data.synthetic_num == load_config(
      "view_video_3dcnn" + (f":{variant}" if variant else "")).data.synthetic_num  # the cines' phantom set
  # nothing but the data source differs
  diff = {k for k in stills.data if stills.data[k] != phases.data[k]}
  assert diff == {"builder_config", "frame_sampler"} | ({"size"} if variant is None else set())
  for part in ("model", "optim", "train", "task"):
    assert stills[part].to_dict() == phases[part].to_dict(), part


@pytest.mark.slow
def test_ecg_phases_smoke_trains_end_to_end(tmp_path):
  """``python -m echojax.train --config view_image_effnetb2:ecg_phases,smoke`` (in process): trains, validates on
  the ED frames and writes a config.json that evaluate rebuilds the same sampler from. About 35 s on 2 cores, most
  of it compiling the train and eval steps on 8 devices (hence slow)."""
  from echojax import train

  workdir = tmp_path / "run"
  with contextlib.redirect_stdout(io.StringIO()):
    train.main(["--config", "view_image_effnetb2:ecg_phases,smoke", "--workdir", str(workdir)])
  config = json.loads((workdir / "config.json").read_text())
  assert config["data"]["frame_sampler"] == PHASE_FRAME and config["data"]["builder_config"] == "videos_64"
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  val = [r for r in records if r.get("split") == "val"]
  assert val and np.isfinite(val[-1]["accuracy"]) and val[-1]["step"] == 2
  assert any(r.get("split") == "train" and np.isfinite(r["loss"]) for r in records)
