"""Region masks from FaceMesh landmarks (jaxtalk/features/regions.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.features import regions


def test_square_polygon_covers_exactly_its_pixels():
  """A square from 0.25 to 0.75 of an 8 px grid holds pixel centres 2.5/8 .. 5.5/8: rows and
  columns 2-5, 16 pixels; clockwise and counter-clockwise orders agree."""
  square = jnp.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
  m = np.asarray(regions.polygon_mask(square, 8))
  want = np.zeros((8, 8), bool)
  want[2:6, 2:6] = True
  np.testing.assert_array_equal(m, want)
  np.testing.assert_array_equal(np.asarray(regions.polygon_mask(square[::-1], 8)), want)


def test_non_convex_polygon_and_batching():
  """An L shape (a 4x4 square minus its top-right 2x2 quarter), batched with a shifted copy."""
  ell = jnp.array([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]])
  batch = jnp.stack([ell, ell * 0.5])
  m = np.asarray(regions.polygon_mask(batch, 4))
  want = np.ones((4, 4), bool)
  want[:2, 2:] = False
  np.testing.assert_array_equal(m[0], want)
  assert m[1].sum() == 3 and m[1][:2, :2].sum() == 3


def _synthetic_face(res=64):
  """Landmarks with the region contours placed by hand: every other point at the face centre."""
  lm = np.full((478, 2), 0.5, np.float32)

  def ring(idx, cx, cy, rx, ry):
    th = np.linspace(0, 2 * np.pi, len(idx), endpoint=False)
    lm[list(idx)] = np.stack([cx + rx * np.cos(th), cy + ry * np.sin(th)], -1)
  ring(regions.FACE_OVAL, 0.5, 0.5, 0.3, 0.4)
  ring(regions.RIGHT_EYE, 0.38, 0.4, 0.05, 0.03)
  ring(regions.LEFT_EYE, 0.62, 0.4, 0.05, 0.03)
  ring(regions.RIGHT_BROW, 0.38, 0.33, 0.06, 0.015)
  ring(regions.LEFT_BROW, 0.62, 0.33, 0.06, 0.015)
  ring(regions.OUTER_LIPS, 0.5, 0.7, 0.1, 0.05)
  ring(regions.INNER_LIPS, 0.5, 0.7, 0.07, 0.02)
  return lm


def test_labels_follow_the_paint_order_and_one_hot():
  lm = _synthetic_face()
  lab = np.asarray(regions.region_labels(lm, 64))
  assert lab[0, 0] == 0 and lab[32, 32] == 1                      # corner, face centre
  assert lab[int(0.4 * 64), int(0.38 * 64)] == 3                 # right eye centre
  assert lab[int(0.33 * 64), int(0.62 * 64)] == 2                # left brow
  assert lab[int(0.7 * 64), int(0.5 * 64)] == 5                  # mouth interior
  assert lab[int(0.7 * 64), int(0.415 * 64)] == 4                # between inner and outer lip
  masks = np.asarray(regions.region_masks(lm[None], 64))
  assert masks.shape == (1, 64, 64, regions.NUM_REGIONS) and masks.dtype == np.float32
  np.testing.assert_array_equal(masks.sum(-1), 1.0)
  jitted = jax.jit(regions.region_masks, static_argnums=1)(jnp.asarray(lm[None]), 64)
  np.testing.assert_array_equal(np.asarray(jitted), masks)


def test_lip_eye_weight_mask_boxes():
  lm = _synthetic_face()
  m = np.asarray(regions.lip_eye_weight_mask(lm, 64, lip_weight=2.0, eye_weight=1.0,
                                             margin=0.0))
  assert m[int(0.7 * 64), int(0.5 * 64)] == 2.0 and m[int(0.4 * 64), int(0.62 * 64)] == 1.0
  assert m[32, 32] == 0.0 and m[0, 0] == 0.0
  lips = m == 2.0  # the outer-lip box: 0.4..0.6 x 0.65..0.75 -> ~13 x 6 px
  assert 50 < lips.sum() < 100, lips.sum()
  grown = np.asarray(regions.lip_eye_weight_mask(lm, 64, margin=0.2))
  assert grown.sum() > (m > 0).sum()


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match="478"):
    regions.region_labels(np.zeros((68, 2)), 8)


@pytest.mark.needs_data
def test_real_frame_regions_are_plausible(real_shards):
  """On FaceMesh landmarks of a preprocessed real clip (64 px crops): the face oval covers a
  plausible share of the crop, eyes / brows / lips are small but present, and the eyes and
  mouth lie inside the face oval."""
  import grain  # pylint: disable=g-import-not-at-top
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  path = sorted(real_shards.glob("*.array_record"))[0]
  rec = schema.decode_record(grain.sources.ArrayRecordDataSource([str(path)])[0],
                             keys={"landmarks", "num_frames"})
  lm = np.asarray(rec["landmarks"], np.float32)[::20]
  areas = regions.region_areas(regions.region_labels(lm, 64))
  face = areas[:, 1:].sum(-1)
  assert ((face > 0.12) & (face < 0.6)).all(), face
  for r in (2, 3, 4):  # brows, eyes, lips
    assert ((areas[:, r] > 0.0005) & (areas[:, r] < 0.03)).all(), (regions.REGIONS[r], areas)
  oval = np.asarray(regions.polygon_mask(lm[:, list(regions.FACE_OVAL), :2], 64))
  for poly in (regions.RIGHT_EYE, regions.LEFT_EYE, regions.OUTER_LIPS):
    inside = np.asarray(regions.polygon_mask(lm[:, list(poly), :2], 64))
    assert inside.any(axis=(1, 2)).all() and not (inside & ~oval).any(), poly


def _pipeline_config(**inp):
  from configs import common  # pylint: disable=g-import-not-at-top
  c = common.base_config()
  c.batch_size = 2
  c.input.update(window=3, resolution=64, keys=("frames", "landmarks", "source_landmarks",
                                                 "mouth_box"), **inp)
  return c


def test_synthetic_landmarks_match_the_drawn_face():
  """Synthetic batches: the eyes' and mouth's region pixels are exactly the drawn eye / mouth
  colours, and source_landmarks comes with them."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  b = next(input_pipeline.create_iterator(_pipeline_config(synthetic=True)))
  assert b["landmarks"].shape == (2, 3, 478, 2) and b["landmarks"].dtype == np.float32
  assert b["source_landmarks"].shape == (2, 478, 2)
  lab = np.asarray(regions.region_labels(b["landmarks"], 64))
  eyes, mouth = b["frames"][lab == 3], b["frames"][lab == 5]
  assert eyes.size and np.allclose(eyes, -0.9)
  assert mouth.size and np.allclose(mouth, [-0.6, -1.0, -0.8])
  assert (lab == 0).mean() > 0.5 and (lab == 1).mean() > 0.1


@pytest.mark.needs_data
def test_real_landmarks_follow_the_random_crop(real_shards):
  """Under random-crop augmentation the batch's landmarks are mapped into the new crop like the
  mouth box (which preprocessing derives from the same landmarks: `face.mouth_box`)."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face  # pylint: disable=g-import-not-at-top
  c = _pipeline_config(data_dir=str(real_shards), random_crop=True, crop_min=0.7)
  b = next(input_pipeline.create_iterator(c))
  np.testing.assert_allclose(face.mouth_box(b["landmarks"]), b["mouth_box"], atol=2e-3)
