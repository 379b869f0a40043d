"""Video ResNets: torchvision-exact parameter counts (eval_shape), R(2+1)D midplanes, downsampling in T/H/W,
and a jitted width-8 forward pass with BatchNorm updates."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax.errors import UserError
from echojax.models import get_model, list_models
from echojax.models.summary import count_params, host_init
from echojax.models.video_resnet import VideoResNet, midplanes


def abstract_vars(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))


@pytest.mark.parametrize("name,count", [("r3d_18", 33_371_472), ("r2plus1d_18", 31_505_325)])
def test_param_counts_equal_torchvision(name, count):
  v = abstract_vars(get_model(name), (1, 8, 112, 112, 3))  # 400 Kinetics classes by default
  assert count_params(v["params"]) == count


def test_midplanes_and_torch_names():
  assert midplanes(64, 64) == 144 and midplanes(64, 128) == 230 and midplanes(128, 128) == 288
  p = abstract_vars(get_model("r2plus1d_18"), (1, 4, 64, 64, 3))["params"]
  assert p["stem_conv_spatial"]["kernel"].shape == (1, 7, 7, 3, 45)
  assert p["stem_conv_temporal"]["kernel"].shape == (3, 1, 1, 45, 64)
  blk = p["stage2_block0"]
  # one midplanes per block, from its (inplanes, planes), used by both of its convs (as torchvision)
  assert blk["conv1_spatial"]["kernel"].shape == (1, 3, 3, 64, 230)
  assert blk["conv1_temporal"]["kernel"].shape == (3, 1, 1, 230, 128)
  assert blk["conv2_spatial"]["kernel"].shape == (1, 3, 3, 128, 230)
  assert blk["conv1_mid_bn"]["scale"].shape == (230,)
  assert blk["downsample_conv"]["kernel"].shape == (1, 1, 1, 64, 128)
  r3d = abstract_vars(get_model("r3d_18"), (1, 4, 64, 64, 3))["params"]
  assert r3d["stem_conv"]["kernel"].shape == (3, 7, 7, 3, 64)
  assert r3d["stage4_block1"]["conv2"]["kernel"].shape == (3, 3, 3, 512, 512)
  assert "bias" not in r3d["stage1_block0"]["conv1"] and r3d["head"]["kernel"].shape == (512, 400)


def test_registry_and_errors():
  assert {"r3d_18", "r2plus1d_18", "video_resnet"} <= set(list_models())
  with pytest.raises(UserError, match="model.depth"):
    get_model("r3d_18", depth=34)
  with pytest.raises(UserError, match="model.kind"):
    abstract_vars(VideoResNet(kind="mc3"), (1, 4, 32, 32, 3))
  with pytest.raises(UserError, match="videos"):
    abstract_vars(VideoResNet(), (1, 32, 32, 3))


@pytest.mark.parametrize("kind", ["r3d", "r2plus1d"])
def test_downsampling_in_time_and_space(kind):
  m = VideoResNet(kind=kind, width=8, num_classes=0)
  x = jnp.zeros((1, 16, 64, 64, 3))
  v = abstract_vars(m, x.shape)
  _, inter = jax.eval_shape(lambda v: m.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), v)
  shapes = {i: inter["intermediates"][f"stage{i}_block1"]["__call__"][0].shape for i in (1, 2, 3, 4)}
  # stem: /2 in H, W only; stages 2-4: /2 in T, H and W
  assert shapes == {1: (1, 16, 32, 32, 8), 2: (1, 8, 16, 16, 16), 3: (1, 4, 8, 8, 32), 4: (1, 2, 4, 4, 64)}


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_width8_jits_and_runs(name):
  m = get_model(name, width=8, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 32, 32, 3))
  v = host_init(m, x)
  step = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))
  (y, aux), new = step(v, x)
  assert y.shape == (2, 3) and aux["features"].shape == (2, 64)
  assert np.isfinite(np.asarray(y)).all()
  assert not np.allclose(new["batch_stats"]["stem_bn"]["mean"], v["batch_stats"]["stem_bn"]["mean"])
  # eval: running statistics, item 0 independent of item 1
  ev = jax.jit(lambda v, x: m.apply(v, x, train=False)[0])
  other = x.at[1].set(-x[1])
  np.testing.assert_allclose(ev(v, x)[0], ev(v, other)[0], rtol=1e-5, atol=1e-5)
