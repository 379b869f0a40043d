"""python -m echojax.predict: any image file/format/size -> per-image class probabilities, unreadable files reported.

The run is a fake EchoSDNet smoke workdir (config.json + a checkpoint of host-initialised variables), so these tests
need no dataset and no training; tests/test_echosdnet_experiment.py predicts with a really trained run.
"""

from __future__ import annotations

import csv

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from echojax import config as config_lib
from echojax import predict
from echojax.errors import UserError


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
  """A workdir with the echosdnet:smoke config and a checkpoint whose head favours neither class too much."""
  from echojax import tasks
  from echojax.checkpoint import Checkpointer
  from echojax.models import summary
  from echojax.run import build_model

  workdir = tmp_path_factory.mktemp("run")
  config = config_lib.load_config("echosdnet:smoke")
  (workdir / "config.json").write_text(config_lib.to_json(config))
  task = tasks.get_task(config)
  model = build_model(config, task)
  variables = summary.host_init(model, jnp.zeros((1, 32, 32, 3)), seed=1)
  # Small output weights so the softmax is not saturated (probabilities then test the arithmetic, not 0/1).
  variables["params"]["head_out"]["kernel"] = variables["params"]["head_out"]["kernel"] * 0.01
  ckpt = Checkpointer(workdir, async_=False)
  ckpt.save(3, {"step": jnp.asarray(3, jnp.int32), "params": variables["params"],
                "batch_stats": variables["batch_stats"]}, {"step": 3})
  ckpt.wait()
  ckpt.close()
  return workdir, model, variables


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  """Images in the formats and sizes the pipeline meets, a corrupt one, and a non-image file."""
  d = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(d / "a_rgb_800x600.png")
  Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(d / "b_rgb_1024x768.jpg", quality=90)
  Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8), mode="L").save(d / "c_grey.bmp")
  Image.fromarray(rng.integers(0, 256, (224, 224, 4), dtype=np.uint8), mode="RGBA").save(d / "d_rgba.png")
  sub = d / "nested"
  sub.mkdir()
  Image.fromarray(rng.integers(0, 65536, (120, 160), dtype=np.uint16)).save(sub / "e_grey16.png")
  assert Image.open(sub / "e_grey16.png").mode.startswith("I")  # really 16-bit on disk
  (d / "f_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
  (d / "notes.txt").write_text("not an image; ignored by the folder search")
  return d


def test_predicts_every_readable_image_and_reports_the_corrupt_one(fake_run, image_dir, tmp_path):
  workdir, model, variables = fake_run
  out = tmp_path / "preds.csv"
  res = predict.predict_images(workdir, image_dir, out, batch_size=2)  # 5 readable -> a padded last batch
  names = [r["file"].split("/")[-1] for r in res.rows]
  assert names == ["a_rgb_800x600.png", "b_rgb_1024x768.jpg", "c_grey.bmp", "d_rgba.png", "e_grey16.png"]
  assert res.checkpoint == "latest" and res.step == 3  # no best checkpoint -> latest
  assert [p.split("/")[-1] for p, _ in res.skipped] == ["f_corrupt.png"]
  assert "not a readable image" in res.skipped[0][1]
  assert "f_corrupt.png" in res.summary() and "skipped 1" in res.summary()
  # CSV: header + one row per readable image; probabilities sum to 1; predicted class = argmax.
  with out.open() as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["file", "predicted_class", "prob_single", "prob_dual"]
  assert len(rows) == 5
  for r in rows:
    p = np.array([float(r["prob_single"]), float(r["prob_dual"])])
    assert abs(p.sum() - 1.0) < 1e-5 and (p >= 0).all()
    assert r["predicted_class"] == ["single", "dual"][int(p.argmax())]
  with (tmp_path / "preds.skipped.csv").open() as f:
    skipped = list(csv.DictReader(f))
  assert len(skipped) == 1 and skipped[0]["file"].endswith("f_corrupt.png") and skipped[0]["reason"]
  # Same numbers as the model on the builder's plain resize to 224, the loader's INTER_AREA resize to data.size
  # (32) and the run's / 255 (batching and padding change nothing).
  x = np.stack([_pixels(image_dir / n if n != "e_grey16.png" else image_dir / "nested" / n) for n in names])
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(x))
  want = np.asarray(jax.nn.softmax(logits, axis=-1))
  got = np.array([[r["prob_single"], r["prob_dual"]] for r in res.rows])
  np.testing.assert_allclose(got, want, atol=1e-5)


def _pixels(path):
  from echojax.data.images import read_image, resize_image

  stored = resize_image(read_image(path), 224)
  return cv2.resize(stored, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def test_skip_list_is_named_after_the_output_and_touches_nothing_else(fake_run, image_dir, tmp_path):
  """A folder that already holds someone's skipped.csv keeps it: the skip list is <out stem>.skipped.csv."""
  workdir, _, _ = fake_run
  (tmp_path / "skipped.csv").write_text("a user's own file\n")
  predict.predict_images(workdir, [image_dir / "c_grey.bmp", image_dir / "f_corrupt.png"], tmp_path / "x.csv")
  assert (tmp_path / "skipped.csv").read_text() == "a user's own file\n"
  assert "f_corrupt.png" in (tmp_path / "x.skipped.csv").read_text()
  predict.predict_images(workdir, image_dir / "c_grey.bmp", tmp_path / "x.csv")  # nothing skipped: stale list goes
  assert not (tmp_path / "x.skipped.csv").exists() and (tmp_path / "skipped.csv").exists()


def test_real_echo_frames(fake_run, fixtures_dir, tmp_path):
  workdir, _, _ = fake_run
  frames = fixtures_dir / "echo_images"
  res = predict.predict_images(workdir, frames, tmp_path / "real.csv")
  assert len(res.rows) == len(list(frames.glob("*.png"))) == 6 and not res.skipped
  for r in res.rows:
    assert abs(r["prob_single"] + r["prob_dual"] - 1.0) < 1e-5
    assert r["predicted_class"] in ("single", "dual")


def test_single_file_and_cli(fake_run, image_dir, tmp_path, capsys):
  workdir, _, _ = fake_run
  out = tmp_path / "one.csv"
  predict.main(["--workdir", str(workdir), "--images", str(image_dir / "d_rgba.png"), str(image_dir / "c_grey.bmp"),
                "--out", str(out), "--checkpoint", "latest"])
  captured = capsys.readouterr()
  assert "predicted 2 image(s)" in captured.out and f"wrote {out}" in captured.out
  assert not any(ln.startswith("{") for ln in captured.out.splitlines())  # the rows are in the CSV, not the screen
  assert "CheckpointManagerOptions" not in captured.err  # no orbax notices for the user
  with out.open() as f:
    assert [r["file"].split("/")[-1] for r in csv.DictReader(f)] == ["d_rgba.png", "c_grey.bmp"]


def test_a_missing_path_among_several_is_a_named_skip_and_nothing_readable_exits_2(fake_run, image_dir, tmp_path,
                                                                                    capsys):
  workdir, _, _ = fake_run
  res = predict.predict_images(workdir, [image_dir / "c_grey.bmp", tmp_path / "gone.png"], tmp_path / "a.csv")
  assert [r["file"] for r in res.rows] == [str(image_dir / "c_grey.bmp")]
  assert res.skipped == [(str(tmp_path / "gone.png"), "no such file or folder")]
  with pytest.raises(SystemExit) as e:
    predict.main(["--workdir", str(workdir), "--images", str(image_dir / "f_corrupt.png"), "--out",
                  str(tmp_path / "b.csv")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "error: none of the 1 input(s) could be read" in err and "Traceback" not in err
  assert "f_corrupt.png" in (tmp_path / "b.skipped.csv").read_text()


def test_user_errors(fake_run, tmp_path, capsys):
  workdir, _, _ = fake_run
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("no images here")
  with pytest.raises(UserError, match="no image files"):
    predict.predict_images(workdir, empty)
  with pytest.raises(UserError, match="no such file or folder"):
    predict.predict_images(workdir, tmp_path / "missing")
  with pytest.raises(UserError, match="config.json"):
    predict.predict_images(tmp_path, empty)
  with pytest.raises(SystemExit) as e:  # the CLI: message, exit 2, no traceback
    predict.main(["--workdir", str(workdir), "--images", str(empty)])
  assert e.value.code == 2
  assert "no image files" in capsys.readouterr().err
