"""GoHD's latent navigable face animator (jaxtalk.models.gohd.animator, GoHD section 3.3)."""

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.gohd import common as gohd_common
from jaxtalk.core import sharding
from jaxtalk.models.gohd import animator

B, T = 2, 3
RES = 32      # tiny size at 32² keeps every test (compile included) well under 20 s.


def _net(dtype=jnp.float32, res=RES):
  return animator.animator_from_config(gohd_common.animator_model_config("tiny", image_size=res),
                                       dtype=dtype)


def _smooth_images(key, n, res=RES):
  """Smooth random images in (-1, 1) (an 8x8 normal field, bicubically upsampled)."""
  x = jax.random.normal(key, (n, 8, 8, 3))
  return jnp.tanh(jax.image.resize(x, (n, res, res, 3), "cubic"))


def _inputs(seed=0, t=T, res=RES):
  k = jax.random.split(jax.random.key(seed), 3)
  radius = gohd_common.animator_model_config("tiny").radius
  src = _smooth_images(k[0], B, res)
  coeffs = jax.random.normal(k[1], (B, t, animator.NUM_COEFFS))
  gaze = jax.random.normal(k[2], (B, t, animator.NUM_GAZE))
  return src, animator.driving_windows(coeffs, radius), gaze


@pytest.fixture(scope="module")
def tiny():
  net = _net()
  src, win, gaze = _inputs()
  params = jax.jit(net.init)(jax.random.key(1), src, win, gaze)["params"]
  return net, params, (src, win, gaze)


def _apply(net, params, *args, method=None, **kw):
  """`net.apply` jitted (eager linen dispatch compiles every op and is slow on 2 cores)."""
  fn = lambda p, a, k: net.apply({"params": p}, *a, method=method, **k)  # noqa: E731
  return jax.jit(fn)(params, args, kw)


def _gram_error(m):
  m = np.asarray(m, np.float64)
  return np.abs(m.T @ m - np.eye(m.shape[1])).max()


def test_codebook_orthonormal_for_random_weights_and_after_adam():
  """MᵀM = I (to 1e-5) for several random weights, and still after Adam steps that move the
  weight: the QR runs at every call, so no update can break the orthogonality (LIA)."""
  book = animator.MotionCodebook(latent_dim=64, num_directions=20)
  for seed in range(3):
    params = book.init(jax.random.key(seed))["params"]
    m = book.apply({"params": params})
    assert m.shape == (64, 20) and m.dtype == jnp.float32
    assert _gram_error(m) < 1e-5
  target = jax.random.normal(jax.random.key(7), (64, 20))
  loss = lambda p: jnp.sum(book.apply({"params": p}) * target) + jnp.sum(  # noqa: E731
      book.apply({"params": p})[:5] ** 3)
  opt = optax.adam(0.1)
  state = opt.init(params)
  w0 = np.asarray(nn.unbox(params)["directions"])
  for _ in range(5):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert np.abs(np.asarray(nn.unbox(params)["directions"]) - w0).max() > 0.1   # it moved
  assert _gram_error(book.apply({"params": params})) < 1e-5


@pytest.fixture(scope="module")
def renders(tiny):
  """Every render the λ / ξ tests compare, computed in one jitted call (one compile)."""
  net, params, (src, win, gaze) = tiny
  A = animator.Animator  # noqa: N806

  def run(p):
    ap = lambda *a, method=None, **k: net.apply({"params": p}, *a, method=method, **k)  # noqa: E731
    z_r, feats = ap(src, method=A.encode)
    w, g = win[:, 0], gaze[:, 0]
    out = {"z_r": z_r}
    out["z_lam0"], out["nav"] = ap(z_r, w, g, 0.0, method=A.navigate)
    out["z_xi0"], out["nav_xi0"] = ap(z_r, w, g, xi=jnp.zeros((B, 20)), method=A.navigate)
    out["ref"], _ = ap(feats, z_r, method=A.render)
    out["decode_lam0"], _ = ap(feats, z_r, win, gaze, 0.0, method=A.decode)
    out["driven"], out["aux"] = ap(src, win, gaze)
    out["lam1"], _ = ap(src, win, gaze, 1.0)
    out["lam0"], out["aux0"] = ap(src, win, gaze, 0.0)
    out["xi0"], _ = ap(src, win, gaze, xi=jnp.zeros((B, T, 20)))
    out["half"], out["aux_half"] = ap(src, win, gaze, jnp.full((B, T), 0.5))
    return out

  return jax.tree_util.tree_map(np.asarray, jax.jit(run)(params))


# Renders of the same latent compiled at other batch sizes (B vs B·T frames) may differ by float
# rounding (XLA picks other convolution loops): 1e-5, against differences > 1e-3 that λ makes.
ATOL = 1e-5


def test_zero_motion_decodes_the_identity_code(renders):
  """λ = 0 or ξ = 0 gives z^D == z^R exactly (η = 0), and the λ = 0 frame is the frame rendered
  from z^R alone (GoHD Fig. 8's reference image I^R)."""
  r = renders
  np.testing.assert_array_equal(r["z_lam0"], r["z_r"])
  assert np.abs(r["nav"]["eta"]).max() > 0          # the motion exists; λ = 0 removed it.
  np.testing.assert_array_equal(r["z_xi0"], r["z_r"])
  assert np.abs(r["nav_xi0"]["eta"]).max() == 0.0
  for t in range(T):
    np.testing.assert_allclose(r["decode_lam0"][:, t], r["ref"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(r["lam0"][:, t], r["ref"], rtol=0, atol=ATOL)


def test_lambda_endpoints_are_reference_and_driven_frames(renders):
  """λ = 1 is the normal driven render, λ = 0 the ξ = 0 render, λ = 0.5 is neither and its z^D
  is z^R + η/2 (Fig. 8's interpolation)."""
  r = renders
  np.testing.assert_allclose(r["lam1"], r["driven"], rtol=0, atol=ATOL)
  np.testing.assert_allclose(r["lam0"], r["xi0"], rtol=0, atol=ATOL)
  z_r = r["aux"]["z_r"][:, None]
  np.testing.assert_array_equal(r["aux0"]["z_d"], np.broadcast_to(z_r, r["aux0"]["z_d"].shape))
  np.testing.assert_allclose(r["aux_half"]["z_d"], z_r + 0.5 * r["aux"]["eta"], rtol=1e-6,
                             atol=1e-6)
  assert np.abs(r["driven"] - r["lam0"]).max() > 1e-3
  assert np.abs(r["half"] - r["lam0"]).max() > 1e-4
  assert np.abs(r["half"] - r["driven"]).max() > 1e-4


def test_driving_windows_replicate_the_clip_borders():
  """Windows of radius 2 over 5 frames, hand-checked at t = 0, 2 and T-1 = 4."""
  t_idx = np.arange(5, dtype=np.float32)
  coeffs = jnp.asarray(np.stack([10 * t_idx, 10 * t_idx + 1], -1)[None].repeat(2, 0))  # [2,5,2]
  coeffs = coeffs.at[1].add(100.0)
  w = np.asarray(animator.driving_windows(coeffs, 2))
  assert w.shape == (2, 5, 5, 2)
  np.testing.assert_array_equal(w[0, 0, :, 0], [0, 0, 0, 10, 20])      # frame 0 replicated
  np.testing.assert_array_equal(w[0, 4, :, 0], [20, 30, 40, 40, 40])   # frame 4 replicated
  np.testing.assert_array_equal(w[0, 2, :, 1], [1, 11, 21, 31, 41])
  np.testing.assert_array_equal(w[1, 0, :, 1], [101, 101, 101, 111, 121])
  np.testing.assert_array_equal(w[:, :, 2], np.asarray(coeffs))        # centre = frame t
  one = np.asarray(animator.driving_windows(coeffs[:, :1], 3))         # a 1-frame clip
  np.testing.assert_array_equal(one, np.broadcast_to(np.asarray(coeffs[:, :1, None]), one.shape))
  assert animator.driving_windows(coeffs, 0).shape == (2, 5, 1, 2)
  with pytest.raises(ValueError, match="radius"):
    animator.driving_windows(coeffs, -1)
  with pytest.raises(ValueError, match="coeffs"):
    animator.driving_windows(coeffs[0], 2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_dtypes_and_logical_axes(dtype):
  """Frames [B, T, H, W, 3] float32 in (-1, 1), z float32, flows/masks float32 per scale, params
  float32 with logical names from sharding.LOGICAL_AXES, in f32 and bf16 compute."""
  net = _net(dtype)
  src, win, gaze = _inputs()
  variables = jax.jit(net.init)(jax.random.key(0), src, win, gaze)
  params = variables["params"]
  for leaf in jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned)):
    assert isinstance(leaf, nn.Partitioned), type(leaf)
    assert leaf.value.dtype == jnp.float32
    assert set(leaf.names) <= set(sharding.LOGICAL_AXES), leaf.names
  frames, aux = jax.jit(net.apply)(variables, src, win, gaze)
  assert frames.shape == (B, T, RES, RES, 3) and frames.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(frames))) and float(jnp.abs(frames).max()) <= 1.0
  assert aux["z_r"].shape == (B, 64) and aux["z_r"].dtype == jnp.float32
  assert aux["z_d"].shape == (B, T, 64) and aux["xi"].shape == (B, T, 20)
  assert [f.shape[2] for f in aux["flows"]] == [8, 16, 32]
  for f, m in zip(aux["flows"], aux["masks"]):
    assert f.dtype == jnp.float32 and f.shape[-1] == 2 and m.shape[-1] == 1
  z_r, feats = _apply(net, params, src, method=animator.Animator.encode)
  assert [x.dtype for x in feats] == [jnp.dtype(dtype)] * 3
  assert [x.shape[-1] for x in feats] == [32, 32, 32]
  if dtype == jnp.bfloat16:   # bf16 compute renders close to the f32 network with the same params
    f32, _ = jax.jit(_net().apply)(variables, src, win, gaze)
    assert float(jnp.abs(f32 - frames).mean()) < 0.05


def test_bad_shapes_raise(tiny):
  net, params, (src, win, gaze) = tiny
  with pytest.raises(ValueError, match="SourceEncoder"):
    _apply(net, params, src[:, :16], win, gaze)
  with pytest.raises(ValueError, match="decode"):
    _apply(net, params, src, win, gaze[:, :1])
  with pytest.raises(ValueError, match="power of two"):
    animator.decoder_resolutions(48)


def test_tiny_animator_overfits_two_pairs():
  """A few hundred Adam steps on 2 fixed (source, target) pairs lower the L1 reconstruction
  clearly (measured at 32²: 0.501 -> 0.046 after 200 steps, lr 2e-3; copying the source
  would score 0.38)."""
  net = _net()
  k = jax.random.split(jax.random.key(0), 4)
  src = _smooth_images(k[0], 2)
  tgt = jnp.roll(src, (2, 1), axis=(1, 2)) * 0.9     # a shifted, dimmer copy: warp + colour.
  win = jax.random.normal(k[1], (2, 1, 9, animator.NUM_COEFFS))
  gaze = jax.random.normal(k[2], (2, 1, 2))
  params = jax.jit(net.init)(k[3], src, win, gaze)["params"]
  opt = optax.adam(2e-3)
  state = opt.init(params)

  def loss_fn(p):
    frames, _ = net.apply({"params": p}, src, win, gaze)
    return jnp.mean(jnp.abs(frames[:, 0] - tgt))

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  losses = []
  for _ in range(200):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  final = float(jax.jit(loss_fn)(params))
  assert np.isfinite(final)
  assert final < 0.5 * losses[0], (losses[0], final)
