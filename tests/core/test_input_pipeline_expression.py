"""The input pipeline's GoHD expression keys on the synthetic source (`config.input.synthetic`):
e and f consistent with the frames' mouth opening (the mel energy), blinks, and the synthetic
basis `expression.basis_for_config` returns."""

import numpy as np

from configs import common
from jaxtalk.core import input_pipeline
from jaxtalk.features import expression as ex

KEYS = ("expression", "eye_features", "source_expression", "source_eye_features")


def _config(keys, window=50, batch_size=8, seed=0):
  c = common.base_config()
  c.batch_size = batch_size
  c.input.synthetic = True
  c.input.window = window
  c.input.resolution = 16
  c.input.keys = tuple(keys)
  c.input.shuffle_seed = seed
  return c


def test_synthetic_batches_have_the_expression_keys():
  batch = next(input_pipeline.create_iterator(_config(KEYS + ("mel", "pose"))))
  shapes = {"expression": (8, 50, 64), "eye_features": (8, 50, 21), "source_expression": (8, 64),
            "source_eye_features": (8, 21)}
  for k, shape in shapes.items():
    assert batch[k].shape == shape and batch[k].dtype == np.float32, k
  basis = ex.basis_for_config(_config(()))
  assert basis is ex.synthetic_basis()
  # f is f(e) in the basis the stages get, for the window and for the source frame.
  np.testing.assert_allclose(batch["eye_features"],
                             ex.eye_features_from_coefficients(basis, batch["expression"]),
                             atol=1e-6)
  np.testing.assert_allclose(batch["source_eye_features"],
                             ex.eye_features_from_coefficients(basis, batch["source_expression"]),
                             atol=1e-6)
  # The other keys do not depend on whether the expression keys are asked for.
  plain = next(input_pipeline.create_iterator(_config(("mel", "pose"))))
  np.testing.assert_array_equal(plain["mel"], batch["mel"])
  np.testing.assert_array_equal(plain["pose"], batch["pose"])
  again = next(input_pipeline.create_iterator(_config(KEYS)))
  np.testing.assert_array_equal(again["expression"], batch["expression"])


def test_synthetic_mouth_coefficient_follows_the_mel_energy_and_blinks_appear():
  batch = next(input_pipeline.create_iterator(_config(("expression", "eye_features", "mel"),
                                                      window=100)))
  e0 = batch["expression"][..., ex.SYNTHETIC_MOUTH].ravel()
  # Mel energy at each frame's centre (the middle of its 16 mel steps, mean over the bands).
  energy = batch["mel"][:, :, 7:9].mean((-1, -2)).ravel()
  r = np.corrcoef(e0, energy)[0, 1]
  assert r > 0.9, r
  # The mouth of the expression-only mesh opens with e_0: inner-lip gap (68-pt 62 / 66).
  l68 = ex.landmarks_68(ex.expression_mesh(ex.synthetic_basis(), batch["expression"]))
  gap = (l68[..., 66, 1] - l68[..., 62, 1]).ravel()
  assert np.corrcoef(gap, e0)[0, 1] > 0.99
  # Blinks: the blink ratio dips well below 1 in some windows, stays ~1 most of the time.
  bl = batch["eye_features"][..., 0]
  assert bl.min() < 0.3 and np.median(bl) > 0.95 and bl.max() <= 1.0 + 1e-6
  assert 0.0 < np.mean(bl < 0.5) < 0.2
