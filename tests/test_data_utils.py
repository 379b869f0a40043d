import json

import numpy as np
import pytest

from echojax.data.report import SkipReport
from echojax.data.video import VideoReadError, read_video, resize_frames, write_avi
from echojax.errors import UserError


def test_avi_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  frames = np.repeat(rng.integers(0, 255, (12, 32, 48, 1), dtype=np.uint8), 3, axis=-1)
  path = tmp_path / "a.avi"
  write_avi(path, frames, fps=37.0)
  out, fps = read_video(path)
  assert out.shape == frames.shape and out.dtype == np.uint8
  assert fps == pytest.approx(37.0)
  assert np.abs(out.astype(int) - frames).mean() < 25  # MJPG is lossy on noise, but close


def test_read_video_errors_say_why(tmp_path):
  with pytest.raises(VideoReadError, match="not found"):
    read_video(tmp_path / "missing.avi")
  bad = tmp_path / "bad.avi"
  bad.write_bytes(b"RIFF0000AVI garbage" * 10)
  with pytest.raises(VideoReadError):
    read_video(bad)


def test_resize_frames_shape():
  frames = np.zeros((3, 768, 1024, 3), np.uint8)
  assert resize_frames(frames, 112).shape == (3, 112, 112, 3)


def test_skip_report_counts_and_strict(tmp_path):
  rep = SkipReport()
  rep.wrote("train", 3)
  rep.skip("Videos/a.avi", "video file not found", row=4)
  rep.note("Videos/b.avi", "resized: 768x1024 -> 112x112")
  s = rep.summary()
  assert "train=3" in s and "Videos/a.avi (row 4): video file not found" in s and "resized" in s
  rep.save(tmp_path / "r.json")
  saved = json.loads((tmp_path / "r.json").read_text())
  assert saved["skipped"][0]["row"] == 4 and len(saved["notes"]) == 1
  with pytest.raises(UserError, match="row 7"):
    SkipReport(strict=True).skip("FileList.csv", "EF is not a number", row=7)
