"""jaxtalk/features/expression.py on jax arrays (the GoHD stages' losses: differentiable under
jit) and its synthetic basis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.features import expression as ex


def test_jnp_expression_mesh_and_eye_features_match_numpy():
  basis = ex.synthetic_basis()
  e = np.random.default_rng(0).normal(size=(2, 3, 64)).astype(np.float32) * basis.std
  mesh_np = ex.expression_mesh(basis, e)
  mesh_j = jax.jit(lambda x: ex.expression_mesh(basis, x))(jnp.asarray(e))
  assert isinstance(mesh_j, jax.Array) and mesh_j.shape == (2, 3, 478, 3)
  assert mesh_j.dtype == jnp.float32 and isinstance(mesh_np, np.ndarray)
  np.testing.assert_allclose(mesh_j, mesh_np, atol=1e-6)
  l68 = ex.landmarks_68(jnp.asarray(mesh_np))
  assert isinstance(l68, jax.Array)
  np.testing.assert_array_equal(l68, ex.landmarks_68(mesh_np))
  f_np = ex.eye_features_from_coefficients(basis, e)
  f_j = jax.jit(lambda x: ex.eye_features_from_coefficients(basis, x))(jnp.asarray(e))
  assert f_j.shape == (2, 3, 21) and f_j.dtype == jnp.float32
  np.testing.assert_allclose(f_j, f_np, atol=1e-5)
  # bf16 coefficients are computed in float32.
  assert ex.expression_mesh(basis, jnp.asarray(e, jnp.bfloat16)).dtype == jnp.float32


def test_eye_features_are_differentiable_under_jit():
  basis = ex.synthetic_basis()
  e = jnp.zeros((4, 64)).at[:, ex.SYNTHETIC_BLINK].set(0.05)

  @jax.jit
  def blink_ratio(x):
    return ex.eye_features_from_coefficients(basis, x)[..., 0].sum()

  g = jax.grad(blink_ratio)(e)
  assert g.shape == (4, 64) and bool(jnp.all(jnp.isfinite(g)))
  # Closing the eyes (e_1 up) lowers the blink ratio linearly: d bl / d e_1 = -1 / full.
  np.testing.assert_allclose(g[:, ex.SYNTHETIC_BLINK], -1.0 / ex.synthetic_blink_full(basis),
                             rtol=1e-4)
  assert float(jnp.abs(g[:, ex.SYNTHETIC_MOUTH]).max()) < 1e-6  # the mouth does not blink.


def test_synthetic_basis_is_fixed_orthonormal_and_invertible_under_pose():
  basis = ex.synthetic_basis()
  assert ex.fingerprint(basis) == ex.fingerprint(ex.synthetic_basis(64))
  c = basis.components.astype(np.float64)
  np.testing.assert_allclose(c @ c.T, np.eye(64), atol=1e-5)
  moved = np.abs(c.reshape(64, 478, 3)).sum((0, 2)) > 0
  assert not moved[list(ex.RIGID_POINTS)].any()
  e = ex.synthetic_coefficients(np.random.default_rng(3), np.linspace(0, 1, 40))
  rot = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
  rot *= np.linalg.det(rot)
  posed = 0.3 * ex.expression_mesh(basis, e) @ rot.T + 0.5
  np.testing.assert_allclose(ex.coefficients(basis, posed, identity=basis.mean), e, atol=2e-5)
  np.testing.assert_allclose(ex.eye_features_from_coefficients(basis, np.zeros(64)),
                             np.eye(21)[0], atol=1e-6)
  full = np.zeros(64, np.float32)
  full[ex.SYNTHETIC_BLINK] = ex.synthetic_blink_full(basis)
  assert abs(float(ex.eye_features_from_coefficients(basis, full)[0])) < 1e-5
  with pytest.raises(ValueError, match="at least the 5 designed"):
    ex.synthetic_basis(4)
