"""Key frames (ED, ES, mid) from tracings, estimated without them, and the loader's image_frame presets."""

import numpy as np
import pytest

from echojax.data.keyframes import key_frames
from echojax.data.pipeline import build_loader
from echojax.errors import UserError


def pulsing_video(n: int, period: float, size: int = 48) -> np.ndarray:
  """A dark disc (the LV blood pool) whose radius peaks at t = 0, period, ... (ED) and dips half a period later."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:size, :size]
  r = np.hypot(yy - size / 2, xx - size / 2)
  frames = [np.clip(np.where(r < size * (0.22 + 0.08 * np.cos(2 * np.pi * t / period)), 30, 170)
                    + rng.normal(0, 20, (size, size)), 0, 255) for t in range(n)]
  return np.repeat(np.stack(frames).astype(np.uint8)[..., None], 3, -1)


def test_tracings_give_ed_es_and_the_midpoint_whatever_their_order():
  rec = {"video": np.zeros((40, 8, 8, 3), np.uint8), "num_frames": 40, "ed_frame": 31, "es_frame": 17}
  kf = key_frames(rec)
  assert (kf.ed, kf.es, kf.mid, kf.source, kf.estimated) == (31, 17, 24, "tracings", False)
  with pytest.raises(ValueError, match="use one of ed, es, mid"):
    kf.index("middle")


def test_without_tracings_the_intensity_cycle_estimates_them():
  video = pulsing_video(48, 13.0)
  kf = key_frames({"video": video, "num_frames": 48, "ed_frame": -1, "es_frame": -1})
  assert kf.source == "intensity" and kf.estimated
  assert min(abs(kf.ed - 13 * m) for m in range(4)) <= 1  # an ED (largest LV) ...
  assert 5 <= kf.es - kf.ed <= 8  # ... and the ES half a cycle after it
  assert kf.mid == (kf.ed + kf.es) // 2
  flat = np.full((20, 16, 16, 3), 90, np.uint8)
  assert key_frames({"video": flat, "num_frames": 20}).source == "middle"


def test_loader_image_frame_presets_pick_the_key_frames():
  video = np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)  # frame k = k
  records = [{"video": video, "num_frames": np.int32(30), "ed_frame": np.int32(20), "es_frame": np.int32(8),
              "ef": np.float32(50)}]
  got = {}
  for mode in ("ed", "es", "mid", "middle"):
    loader = build_loader(records, (np.zeros(1), np.ones(1)), {"preset": "image", "image_frame": mode,
                                                               "batch_size": 1}, "x", train=False, seed=0,
                          process_index=0, process_count=1)
    got[mode] = int(next(iter(loader))["image"][0, 0, 0, 0])
  assert got == {"ed": 20, "es": 8, "mid": 14, "middle": 15}
  with pytest.raises(UserError, match="use middle, random, ed, es or mid"):
    build_loader(records, (np.zeros(1), np.ones(1)), {"preset": "image", "image_frame": "end", "batch_size": 1},
                 "x", train=False, seed=0, process_index=0, process_count=1)
