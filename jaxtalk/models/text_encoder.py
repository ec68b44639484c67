"""Text encoders for the pose denoiser's text condition (PoseTalk "Pose Generation").

PoseTalk maps the motion description with the CLIP text encoder (Radford et al. 2021).
* `ClipTextEncoder`: transformers' `FlaxCLIPTextModel` loaded from a local folder (frozen; its
  params live in the stage's `frozen` tree). Tokens = last hidden state `[B, L, Dc]`, pooled =
  CLIP's pooled output (the EOS token) `[B, Dc]`.
* `TrainableTextEncoder`: the default that needs no download: token embedding + sinusoidal
  positions + a small transformer, trained with the denoiser over the word-level vocabulary of
  `jaxtalk.features.text.build_vocab`. Using it is announced once (logging.warning) by
  `announce_fallback`.

Both return `(tokens [B, L, D], pooled [B, D])`; padded positions (mask False) are zero in tokens.
"""

from __future__ import annotations

import os
from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxtalk.core import logging_utils

from jaxtalk.models import layers
from jaxtalk.models import transformer
from jaxtalk.models.audio_encoder import masked_mean

Dtype = Any


def announce_fallback(what: str) -> None:
  """Logs, once per process and message, that a no-download fallback replaces a pretrained net."""
  logging_utils.announce_once(f"jaxtalk fallback: {what}")


class TrainableTextEncoder(nn.Module):
  """Word-token ids -> contextual tokens (trainable fallback for CLIP).

  Attributes:
    vocab_size: number of token ids (0 = padding).
    width: D. depth: transformer blocks. num_heads: heads. max_len: longest L (positions are
      sinusoidal, so this only bounds inputs).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    ids: `[B, L]` int32. mask: `[B, L]` bool (True = real token). train: dropout on/off.

  Returns:
    (tokens `[B, L, D]` in dtype, pooled `[B, D]` float32 masked mean).
  """
  vocab_size: int = 4096
  width: int = 256
  depth: int = 2
  num_heads: int = 4
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, ids, mask, *, train: bool = False):
    if ids.ndim != 2 or mask.shape != ids.shape:
      raise ValueError(f"TrainableTextEncoder: ids {ids.shape} and mask {mask.shape} must be "
                       "[B, L]")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    emb = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                   embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                               ("vocab", "embed")),
                   name="embed")
    ids = jnp.clip(ids, 0, self.vocab_size - 1)
    x = emb(ids) + layers.sinusoidal_embedding(jnp.arange(ids.shape[1]), self.width).astype(
        self.dtype)
    x = transformer.TransformerStack(self.depth, self.num_heads, 4, False, self.dropout,
                                     name="transformer", **kw)(x, mask=mask, train=train)
    x = jnp.where(mask[..., None], x, 0)
    return x, masked_mean(x, mask)


class ClipTextEncoder:
  """Frozen CLIP text encoder (transformers `FlaxCLIPTextModel`) from a local folder.

  Attributes:
    path: the folder (`config.json` + `flax_model.msgpack`, saved with `save_pretrained`).
    model: the transformers model. params: its params (pass them through `frozen`).
    width: hidden size Dc.
  """

  def __init__(self, path: str, dtype=jnp.float32):
    if not os.path.isfile(os.path.join(path, "config.json")):
      raise ValueError(f"CLIP folder {path!r} has no config.json (save a CLIP text model there "
                       "with FlaxCLIPTextModel.save_pretrained)")
    from transformers import FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
    try:
      self.model = FlaxCLIPTextModel.from_pretrained(path, dtype=dtype, local_files_only=True)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"could not load FlaxCLIPTextModel from {path!r}: {e}") from e
    self.path = path
    self.params = self.model.params
    self.width = int(self.model.config.hidden_size)

  def __call__(self, params, ids, mask):
    """`(tokens [B, L, Dc], pooled [B, Dc])`, float32; traceable under jit/grad."""
    out = self.model(input_ids=ids, attention_mask=mask.astype(jnp.int32), params=params,
                     train=False)
    tokens = jnp.where(mask[..., None], out.last_hidden_state.astype(jnp.float32), 0)
    return tokens, out.pooler_output.astype(jnp.float32)
