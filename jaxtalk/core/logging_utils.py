"""Metric writing (TensorBoard via tensorboardX), progress bar and parameter overview.

Everything here writes only on process 0; other processes get no-op objects, so the training
loop can call them unconditionally.
"""

from __future__ import annotations

import logging as py_logging
import math
import os
import sys
from typing import Any, Mapping, Optional

from absl import logging
import jax
import numpy as np

from jaxtalk.core import optimizers

PyTree = Any


class MetricWriter:
  """Writes scalars and images to `<logdir>` (TensorBoard event files) from process 0.

  Scalars: any key; images: keys whose value is a [N, H, W, 3] array in [-1, 1].
  """

  def __init__(self, logdir: str, *, enabled: Optional[bool] = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._writer = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      os.makedirs(logdir, exist_ok=True)
      self._writer = SummaryWriter(logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    if not self._writer:
      return
    for k, v in scalars.items():
      self._writer.add_scalar(k, float(v), global_step=int(step))

  def write_images(self, step: int, images: Mapping[str, Any], max_images: int = 4):
    """images: {key: [N, H, W, C] float in [-1, 1]} (C = 1 or 3)."""
    if not self._writer:
      return
    for k, v in images.items():
      v = np.asarray(v, np.float32)[:max_images]
      if v.ndim == 3:
        v = v[None]
      v = np.clip((v + 1.0) * 0.5, 0.0, 1.0)
      self._writer.add_images(k, v, global_step=int(step), dataformats="NHWC")

  def flush(self):
    if self._writer:
      self._writer.flush()

  def close(self):
    if self._writer:
      self._writer.close()
      self._writer = None


class Progress:
  """tqdm progress bar (steps/s and ETA) on process 0 when enabled, else silent."""

  def __init__(self, total: int, initial: int, enabled: bool):
    self._bar = None
    if enabled and jax.process_index() == 0:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                       file=sys.stderr, smoothing=0.1)

  def update(self, n: int = 1, **postfix):
    if self._bar is not None:
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
      self._bar.update(n)

  def close(self):
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def _fmt_count(n: int) -> str:
  for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
    if n >= div:
      return f"{n / div:.2f}{unit}"
  return str(n)


def param_overview(params: PyTree, shardings: Optional[PyTree] = None, *,
                   max_rows: int = 60) -> str:
  """Table of parameter paths, shapes, dtypes, counts (and PartitionSpecs) plus the total."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  specs = None
  if shardings is not None:
    specs = [getattr(s, "spec", s) for s in jax.tree.leaves(
        shardings, is_leaf=lambda x: hasattr(x, "spec"))]
    if len(specs) != len(flat):
      specs = None
  rows, total = [], 0
  for i, (path, x) in enumerate(flat):
    n = int(math.prod(x.shape))
    total += n
    spec = f"  {tuple(specs[i])}" if specs is not None else ""
    rows.append(f"  {optimizers.path_str(path):<60} {str(tuple(x.shape)):<20} "
                f"{str(x.dtype):<9} {n:>11,}{spec}")
  if len(rows) > max_rows:
    rows = rows[:max_rows] + [f"  ... ({len(flat) - max_rows} more arrays)"]
  header = f"{len(flat)} parameter arrays, {total:,} parameters ({_fmt_count(total)})"
  return "\n".join([header] + rows)


def count_params(params: PyTree) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))


def log_info(msg: str, *args):
  """absl logging.info on process 0 only."""
  if jax.process_index() == 0:
    logging.info(msg, *args)


_ANNOUNCED = set()


def announce_once(key: str, msg: Optional[str] = None) -> None:
  """Logs `msg` (default: `key`) as a warning (Python `logging`) once per process and `key`:
  the announcement of a substitute for a pretrained network, or of a loss term that is off."""
  if key not in _ANNOUNCED:
    _ANNOUNCED.add(key)
    py_logging.warning(key if msg is None else msg)
