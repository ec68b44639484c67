"""Optimizers from `config.optax` (see `configs/common.py`).

`make_optimizer(cfg, total_steps, params)` builds an optax `GradientTransformation`:

  zero the gradients of frozen params               (so they do not count in the clip norm)
  -> clip_by_global_norm(cfg.clip_grad_norm)        (if > 0)
  -> multi_transform over parameter groups:
       "frozen"  : set_to_zero (no optimizer state)       params matching any `cfg.freeze` regex
       "g<i>"    : <name>(lr = schedule * mult_i, ...)    params whose first matching
                                                          `cfg.lr_mults` regex has multiplier i
       "default" : <name>(lr = schedule, ...)             everything else

Parameter paths are "/"-joined keys, e.g. "params/encoder/Dense_0/kernel"; regexes are matched
with `re.search`. Weight decay (adamw/lamb) applies to parameters with ndim >= 2 only (kernels,
not biases or norm scales), following common practice.

The schedule is a linear warm-up from 0 over `warmup_steps`, then `constant`, `cosine` (to
`lr * end_lr_factor` at `total_steps`) or `linear` (same end value) decay.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import optax

PyTree = Any


def path_str(path) -> str:
  """'/'-joined string of a jax key path, e.g. "encoder/0/kernel" (`jax.tree_util.keystr` with
  `simple=True`)."""
  return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def make_schedule(cfg, total_steps: int) -> Callable[[Any], Any]:
  """Learning-rate schedule (step -> lr) from `cfg.lr/schedule/warmup_steps/end_lr_factor`."""
  lr = float(cfg.lr)
  warmup = int(cfg.get("warmup_steps", 0))
  end = lr * float(cfg.get("end_lr_factor", 0.0))
  name = cfg.get("schedule", "constant")
  decay_steps = max(1, int(total_steps) - warmup)
  if name == "constant":
    after = optax.constant_schedule(lr)
  elif name == "cosine":
    after = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
  elif name == "linear":
    after = optax.linear_schedule(lr, end, decay_steps)
  else:
    raise ValueError(f"optax.schedule={name!r}: expected constant | cosine | linear")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def _base(cfg, schedule, decay_mask) -> optax.GradientTransformation:
  name = cfg.get("name", "adamw")
  b1, b2 = float(cfg.get("b1", 0.9)), float(cfg.get("b2", 0.999))
  wd = float(cfg.get("weight_decay", 0.0))
  if name == "adamw":
    return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=wd, mask=decay_mask)
  if name == "adam":
    return optax.adam(schedule, b1=b1, b2=b2)
  if name == "sgd":
    return optax.sgd(schedule, momentum=b1 if b1 > 0 else None)
  if name == "lamb":
    return optax.lamb(schedule, b1=b1, b2=b2, weight_decay=wd, mask=decay_mask)
  raise ValueError(f"optax.name={name!r}: expected adamw | adam | sgd | lamb")


def _as_pairs(value) -> Sequence[tuple[str, float]]:
  out = []
  for item in (value or ()):
    if len(item) != 2:
      raise ValueError(f"optax.lr_mults entry {item!r}: expected (regex, multiplier)")
    out.append((str(item[0]), float(item[1])))
  return out


def param_labels(cfg, params: PyTree) -> PyTree:
  """Pytree of group labels ("frozen", "g<i>", "default") with the structure of `params`."""
  freeze = [re.compile(r) for r in (cfg.get("freeze", ()) or ())]
  mults = [(re.compile(r), m) for r, m in _as_pairs(cfg.get("lr_mults", ()))]

  def label(path, _):
    name = path_str(path)
    if any(r.search(name) for r in freeze):
      return "frozen"
    for i, (r, m) in enumerate(mults):
      if r.search(name):
        return "frozen" if m == 0 else f"g{i}"
    return "default"

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg, total_steps: int, params: PyTree) -> optax.GradientTransformation:
  """Builds the optimizer of `cfg` (a `config.optax`-like ConfigDict) for `params`.

  Args:
    cfg: ConfigDict with the fields of `configs/common.py` `c.optax`.
    total_steps: steps of the run (end of the decay schedule).
    params: the params pytree (arrays or ShapeDtypeStructs), used to build group labels.

  Returns:
    An optax GradientTransformation.
  """
  schedule = make_schedule(cfg, total_steps)
  decay_mask = lambda p: jax.tree.map(lambda x: len(x.shape) >= 2, p)
  labels = param_labels(cfg, params)
  used = set(jax.tree.leaves(labels))
  transforms = {"default": _base(cfg, schedule, decay_mask), "frozen": optax.set_to_zero()}
  for i, (_, m) in enumerate(_as_pairs(cfg.get("lr_mults", ()))):
    if f"g{i}" in used:
      scaled = lambda step, m=m: schedule(step) * m
      transforms[f"g{i}"] = _base(cfg, scaled, decay_mask)
  transforms = {k: v for k, v in transforms.items() if k in used}
  chain = []
  if "frozen" in used:  # frozen grads do not count towards the clipping norm
    chain.append(optax.masked(optax.set_to_zero(),
                              jax.tree.map(lambda l: l == "frozen", labels)))
  clip = float(cfg.get("clip_grad_norm", 0.0))
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  chain.append(optax.multi_transform(transforms, labels))
  return optax.chain(*chain)
