"""A user's network serialized with `jax.export`: the one loader of frozen networks that jaxtalk
cannot ship or convert (a lip reader for GoHD's L_read, DECA / L2CS / BiSeNet ports for the
animator's losses).

A user writes (or ports) the network in JAX and serializes it with its weights baked in:

    exp = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "tpu"))(
        jax.ShapeDtypeStruct((jax.export.symbolic_shape("N")[0], ...), jnp.float32))
    open(path, "wb").write(exp.serialize(vjp_order=1))

`vjp_order >= 1` is needed wherever a loss backpropagates through the network into a generator.
The callers state the signature they accept (`check`); `load` verifies the file, the
serialization, the signature, the VJP and the platform, and names the file and config key in
every error.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import jax


def signature(exp) -> str:
  """`"[in avals] -> [out avals]"` of an `Exported`, for messages."""
  return f"{[str(a) for a in exp.in_avals]} -> {[str(a) for a in exp.out_avals]}"


def load(path: str, key: str, *, expect: str,
         check: Callable[[Sequence, Sequence], bool], need_vjp: bool = True):
  """Deserializes and checks a `jax.export` file.

  Args:
    path: the file (bytes of `Exported.serialize(...)`).
    key: the config key that named it (e.g. "init_from.lipreader"), for messages.
    expect: the accepted signature in words, for messages.
    check: `(in_avals, out_avals) -> bool`: whether the signature is accepted.
    need_vjp: refuse a serialization without VJP (losses backpropagate through it).

  Returns:
    the `jax.export.Exported`; call it with `.call(*args)` (jittable, differentiable when it
    has a VJP).

  Raises:
    ValueError: naming `key` and `path`: no such file, not a serialization, a signature `check`
      refuses, no VJP (when `need_vjp`), or exported for platforms other than the running one.
  """
  from jax import export  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise ValueError(f"{key} = {path!r}: no such file (expected the bytes of "
                     "`jax.export.export(fn)(...).serialize(vjp_order=1)`)")
  try:
    with open(path, "rb") as f:
      exp = export.deserialize(bytearray(f.read()))
  except Exception as e:  # pylint: disable=broad-except  # any parse failure is the file's.
    raise ValueError(f"{key} = {path!r}: not a jax.export serialization "
                     f"({type(e).__name__}: {e})") from e
  if not check(exp.in_avals, exp.out_avals):
    raise ValueError(f"{key} = {path!r}: signature {signature(exp)}; expected {expect}")
  if need_vjp and not exp.has_vjp():
    raise ValueError(f"{key} = {path!r}: serialized without VJP, so no gradient passes through "
                     "it; re-serialize with `.serialize(vjp_order=1)`")
  backend = jax.default_backend()
  if backend not in exp.platforms:
    raise ValueError(f"{key} = {path!r}: exported for {exp.platforms}, running on {backend!r}; "
                     f"export with platforms=(..., {backend!r})")
  return exp
