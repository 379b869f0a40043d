"""echojax.data.sector: the scan cone of a non-square cine is found from its motion and cropped to without cutting
its sides (the old centre crop did), text outside is masked; fallbacks for a still; smoke checks on real echo data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from echojax.data import ingest, sector

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "echo_images"
H, W = 422, 636
APEX = (400, 40)  # (x, y) of the cone's apex: off-centre, to the right
TEXT_BOXES = [(10, 10, 120, 40), (10, 360, 140, 400)]  # x0, y0, x1, y1: burned-in static text, left side
BAR = (600, 60, 620, 380)  # a static bright bar (grey scale) right of the cone
ECG_Y, ECG_X = 395, (150, 630)  # a sweeping ECG trace below the cone: it changes over time, but is thin


def cone_mask(h=H, w=W, apex=APEX, radius=300, half_angle=38):
  yy, xx = np.mgrid[:h, :w]
  dx, dy = xx - apex[0], yy - apex[1]
  r = np.hypot(dx, dy)
  ang = np.degrees(np.arctan2(dx, dy))
  return (r <= radius) & (np.abs(ang) <= half_angle) & (dy >= 0)


def synthetic_cine(frames=16, seed=0):
  """(T, 422, 636, 3): moving speckle in an off-centre cone, static text boxes and a static bar outside."""
  rng = np.random.default_rng(seed)
  cone = cone_mask()
  out = np.zeros((frames, H, W, 3), np.uint8)
  yy, xx = np.mgrid[:H, :W]
  for t in range(frames):
    speckle = rng.integers(40, 200, (H, W))
    wall = (np.hypot(xx - APEX[0], yy - 220) < 60 + 15 * np.sin(t / 2)) * 50  # a "beating" bright ring
    img = np.where(cone, np.clip(speckle + wall, 0, 255), 0).astype(np.uint8)
    out[t] = img[..., None]
  for x0, y0, x1, y1 in TEXT_BOXES:
    out[:, y0:y1, x0:x1] = 230
  x0, y0, x1, y1 = BAR
  out[:, y0:y1, x0:x1] = 255
  xs = np.arange(*ECG_X)
  for t in range(frames):  # the trace is drawn up to a sweep position that moves right frame by frame
    upto = ECG_X[0] + (t + 1) * (ECG_X[1] - ECG_X[0]) // frames
    ys = (ECG_Y + 12 * np.sin(xs / 9.0) * (np.abs((xs % 80) - 40) < 4)).astype(int)
    for x, y in zip(xs[xs < upto], ys[xs < upto]):
      out[t, y - 1:y + 1, x] = (0, 220, 0)
  return out


def cone_box():
  ys, xs = np.nonzero(cone_mask())
  return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_found_box_contains_the_cone_and_excludes_the_text():
  frames = synthetic_cine()
  sec = sector.find_sector(frames)
  assert sec.method == "motion" and sec.note is None
  x0, y0, x1, y1 = sec.box
  cx0, cy0, cx1, cy1 = cone_box()
  tol = 3  # speckle at the cone's very edge may fall just under the threshold
  assert x0 <= cx0 + tol and y0 <= cy0 + tol and x1 >= cx1 - tol and y1 >= cy1 - tol
  assert sec.mask[cone_mask()].mean() > 0.99
  for bx0, by0, bx1, by1 in TEXT_BOXES + [BAR]:  # no text box / bar overlaps the found region
    assert not sec.mask[by0:by1, bx0:bx1].any()
  assert x1 <= BAR[0] and y1 < ECG_Y - 12 - 1  # nor the (moving) ECG trace


def test_crop_keeps_the_cone_width_where_the_centre_crop_cut_it():
  frames = synthetic_cine()
  sec = sector.find_sector(frames)
  size = 112
  out = sector.crop_to_sector(frames, sec, size)
  assert out.shape == (len(frames), size, size, 3) and out.dtype == np.uint8
  # the cone is the widest thing in the box: it spans (nearly) the whole output width in its widest rows
  cx0, _, cx1, _ = cone_box()
  x0, y0, x1, y1 = sec.box
  scale = size / max(x1 - x0, y1 - y0)
  lit_cols = np.nonzero(out.max(axis=(0, 1, 3)) > 0)[0]
  assert lit_cols.max() - lit_cols.min() + 1 >= (cx1 - cx0) * scale - 3
  # the old centre crop (422 x 422 from x=107..529) cut the cone's right side (it reaches x=cx1 > 529)
  assert cx1 > (W - H) // 2 + H
  old = ingest.to_square(frames, size, "center")
  assert old.shape == out.shape
  # the cone alone (white) through both crops: the sector crop keeps all of it, the centre crop lost its right side
  cone_only = np.repeat((cone_mask() * 255).astype(np.uint8)[None, ..., None], 3, -1)
  def width(out, px_per_out):  # lit column span of the output, in frame pixels
    cols = np.nonzero(out.max(axis=(0, 1, 3)) > 0)[0]
    return (cols.max() - cols.min() + 1) * px_per_out

  assert width(sector.crop_to_sector(cone_only, sec, size), 1 / scale) >= (cx1 - cx0) - 4
  assert width(ingest.to_square(cone_only, size, "center"), H / size) < 0.9 * (cx1 - cx0)
  # the default of to_square is the sector crop now
  np.testing.assert_array_equal(ingest.to_square(frames, size), out)


def test_text_is_black_after_masking():
  frames = synthetic_cine()
  sec = sector.find_sector(frames)
  masked_full = sector.crop_to_sector(frames, sec, max(sec.box[2] - sec.box[0], sec.box[3] - sec.box[1]))
  x0, y0, x1, y1 = sec.box
  s = masked_full.shape[1]
  oy, ox = (s - (y1 - y0)) // 2, (s - (x1 - x0)) // 2
  back = np.zeros_like(frames)  # put the (unresized) crop back into frame coordinates
  back[:, y0:y1, x0:x1] = masked_full[:, oy:oy + y1 - y0, ox:ox + x1 - x0]
  for bx0, by0, bx1, by1 in TEXT_BOXES + [BAR, (ECG_X[0], ECG_Y - 14, ECG_X[1], ECG_Y + 14)]:
    assert back[:, by0:by1, bx0:bx1].max() == 0
  assert (back[:, ~sec.mask] == 0).all()


def test_single_frame_and_blank_inputs_fall_back():
  frames = synthetic_cine(frames=1)
  sec = sector.find_sector(frames)
  assert sec.method == "intensity" and "single frame" in sec.note
  assert sec.mask.any() and sector.crop_to_sector(frames, sec, 64).shape == (1, 64, 64, 3)
  sec = sector.find_sector(frames[0])  # one (H, W, 3) image
  assert sec.method == "intensity"
  blank = np.zeros((5, 40, 60, 3), np.uint8)
  sec = sector.find_sector(blank)
  assert sec.method == "center" and "centre-cropped" in sec.note and sec.box == (10, 0, 50, 40)
  np.testing.assert_array_equal(sector.crop_to_sector(blank, sec, 32), np.zeros((5, 32, 32, 3), np.uint8))


def test_preview_png_has_the_fixed_size(tmp_path):
  from PIL import Image

  frames = synthetic_cine(frames=6)
  sec = sector.find_sector(frames)
  path = sector.preview(frames, sec, tmp_path / "p" / "cine.png")
  assert path.is_file()
  with Image.open(path) as im:
    assert im.size == sector.PREVIEW_SIZE


def _real_dicom_frames() -> np.ndarray:
  """pydicom's own 30-frame cardiac cine (real ultrasound), or a skip."""
  pytest.importorskip("pydicom")
  from pydicom.data import get_testdata_file

  path = get_testdata_file("examples_ybr_color.dcm")
  if path is None:
    pytest.skip("pydicom test file examples_ybr_color.dcm not available in this pydicom install")
  return ingest.read_cine(path).frames


def test_real_dicom_cine_smoke():
  frames = _real_dicom_frames()
  sec = sector.find_sector(frames)
  _check_box(sec, frames.shape[1:3])
  assert sec.method == "motion"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"real echo frames not found at {FIXTURES} (../shared/fixtures)")
@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.png")) if FIXTURES.is_dir() else [])
def test_real_echo_frames_smoke(name):
  img = cv2.imread(str(FIXTURES / name), cv2.IMREAD_COLOR)[..., ::-1]
  sec = sector.find_sector(img)
  _check_box(sec, img.shape[:2])
  assert sector.crop_to_sector(img[None], sec, 112).shape == (1, 112, 112, 3)


def _check_box(sec, shape):
  h, w = shape
  x0, y0, x1, y1 = sec.box
  assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
  assert (x1 - x0) * (y1 - y0) >= 0.02 * h * w and sec.mask.any()


def test_flow_motion_finds_the_cone_and_excludes_text_bar_and_ecg():
  frames = synthetic_cine()
  sec = sector.find_sector(frames, motion="flow")
  assert sec.method == "flow" and sec.motion.dtype == np.float32 and sec.note is None
  assert sec.mask[cone_mask()].mean() > 0.95  # random speckle: the flow is weakest at the apex and the side edges
  assert sec.mask[~cone_mask()].mean() < 0.02  # the hull's final dilation gives back the cone's faint edge
  for bx0, by0, bx1, by1 in TEXT_BOXES + [BAR]:
    assert not sec.mask[by0:by1, bx0:bx1].any()
  assert sec.box[2] <= BAR[0] and sec.box[3] < ECG_Y - 12 - 1


def test_flow_magnitude_is_in_full_resolution_pixels_per_frame():
  """A textured pattern moving 4 px per frame on 512 x 512 frames (the flow runs at 256 px) reads about 4."""
  rng = np.random.default_rng(0)
  tex = cv2.GaussianBlur(rng.uniform(0, 255, (512, 700)).astype(np.float32), (0, 0), 4)
  tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
  grey = np.stack([tex[:, 4 * t:4 * t + 512] for t in range(8)])
  mag = sector.flow_magnitude(grey)
  assert mag.shape == (512, 512)
  assert abs(float(np.median(mag[64:-64, 64:-64])) - 4.0) < 0.5
  assert float(np.median(sector.flow_magnitude(np.repeat(grey[:1], 4, 0)))) < 0.05  # a still cine does not move
  with pytest.raises(ValueError, match="two frames"):
    sector.flow_magnitude(grey[:1])


def test_flow_motion_on_a_real_dicom_cine_agrees_with_the_range_motion():
  frames = _real_dicom_frames()
  flow, rng = sector.find_sector(frames, motion="flow"), sector.find_sector(frames)
  _check_box(flow, frames.shape[1:3])
  assert flow.method == "flow"
  inter, union = (flow.mask & rng.mask).sum(), (flow.mask | rng.mask).sum()
  assert inter / union > 0.8
  with pytest.raises(ValueError, match="motion must be"):
    sector.find_sector(frames, motion="farneback")
  one = sector.find_sector(frames[0], motion="flow")  # a single frame: the intensity fallback, as for "range"
  assert one.method == "intensity"
