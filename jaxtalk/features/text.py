"""Text front end: tokenizers for motion descriptions, and the CLIP text encoder from a local
folder.

PoseTalk ("Pose Generation") encodes the text prompt that describes head motion ("he shakes his
head, then looks to the left") with the CLIP text encoder (Radford et al. 2021). CLIP's weights
cannot be downloaded here, so there are two paths:

* `make_tokenizer(clip_path=DIR)` + `load_clip_text_encoder(DIR)`: transformers' `CLIPTokenizer`
  and `FlaxCLIPTextModel` from a local folder (a HuggingFace CLIP or CLIP-text checkpoint saved
  with `save_pretrained`, holding `config.json`, `flax_model.msgpack`, `vocab.json`,
  `merges.txt`).
* the default that needs no download: a deterministic word-level vocabulary built from the
  training texts (`build_vocab`) with `WordTokenizer`, feeding the trainable encoder in
  `jaxtalk/models/text_encoder.py`. Using it is announced once with `logging.warning`.

Token ids: `0` is padding for the word-level tokenizer (`<pad>`), `1` unknown (`<unk>`). The CLIP
tokenizer uses its own ids (its pad token is not 0); always use the returned mask.
"""

from __future__ import annotations

import collections
import os
import re
from typing import Iterable, Optional, Sequence

import numpy as np

from jaxtalk.core import logging_utils

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]|_", re.UNICODE)


def split_words(text: str) -> list[str]:
  """Lower-cases `text` and splits it into words and single punctuation marks.

  Example: `"He nods, then LOOKS left."` -> `["he", "nods", ",", "then", "looks", "left", "."]`.
  Apostrophes inside a word are kept (`"don't"` is one token).
  """
  if not isinstance(text, str):
    raise TypeError(f"expected str, got {type(text).__name__}: {text!r}")
  return _WORD_RE.findall(text.lower())


def build_vocab(texts: Iterable[str], max_size: int = 4096) -> list[str]:
  """Deterministic word-level vocabulary from training texts.

  Args:
    texts: the training descriptions (any iterable of str).
    max_size: total size including the reserved tokens; must be >= 2.

  Returns:
    list of tokens: `["<pad>", "<unk>", w_1, w_2, ...]`, words ordered by decreasing count, ties
    broken alphabetically (so the result does not depend on the order of `texts`). Words beyond
    `max_size` map to `<unk>`.

  Raises:
    ValueError: if `max_size < 2`.
  """
  if max_size < 2:
    raise ValueError(f"max_size must be >= 2 (room for {PAD}, {UNK}), got {max_size}")
  counts = collections.Counter()
  for t in texts:
    counts.update(split_words(t))
  counts.pop(PAD, None)
  counts.pop(UNK, None)
  words = sorted(counts, key=lambda w: (-counts[w], w))
  return [PAD, UNK] + words[: max_size - 2]


class WordTokenizer:
  """Word-level tokenizer over a vocabulary from `build_vocab`.

  Attributes:
    vocab: list of tokens; `vocab[0]` must be `<pad>` and `vocab[1]` `<unk>`.
    vocab_size: `len(vocab)`.
    pad_id: 0.
  """

  def __init__(self, vocab: Sequence[str]):
    vocab = list(vocab)
    if len(vocab) < 2 or vocab[0] != PAD or vocab[1] != UNK:
      raise ValueError(
          f"vocab must start with [{PAD!r}, {UNK!r}], got {vocab[:2]!r} (use build_vocab)")
    if len(set(vocab)) != len(vocab):
      raise ValueError("vocab has duplicate tokens")
    self.vocab = vocab
    self.vocab_size = len(vocab)
    self.pad_id = PAD_ID
    self._index = {w: i for i, w in enumerate(vocab)}

  def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenises a batch of texts.

    Args:
      texts: B strings (an empty string gives an all-padding row).
      max_len: L; longer texts are truncated.

    Returns:
      ids: int32 `[B, L]`, 0 = padding, 1 = unknown word.
      mask: bool `[B, L]`, True on real tokens.
    """
    if isinstance(texts, str):
      raise TypeError("encode expects a list of strings, got a single str")
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    ids = np.zeros([len(texts), max_len], np.int32)
    for b, t in enumerate(texts):
      toks = [self._index.get(w, UNK_ID) for w in split_words(t)][:max_len]
      ids[b, : len(toks)] = toks
    return ids, ids != PAD_ID

  def decode(self, ids: Sequence[int]) -> str:
    """Inverse of `encode` for one row (padding dropped, words joined with spaces)."""
    return " ".join(self.vocab[int(i)] for i in ids if int(i) != PAD_ID)


class ClipTokenizer:
  """transformers' `CLIPTokenizer` loaded from a local folder, with the `encode` interface.

  Attributes:
    path: the folder.
    vocab_size: size of the BPE vocabulary.
    pad_id: the tokenizer's padding id (not necessarily 0).
  """

  def __init__(self, path: str):
    missing = [f for f in ("vocab.json", "merges.txt") if not os.path.isfile(os.path.join(path, f))]
    if missing:
      raise ValueError(
          f"CLIP tokenizer folder {path!r} lacks {', '.join(missing)}: save a CLIP tokenizer there "
          "with CLIPTokenizer.save_pretrained (model-hub names cannot be downloaded here)")
    from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
    try:
      self._tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"could not load CLIPTokenizer from {path!r}: {e}") from e
    self.path = path
    self.vocab_size = len(self._tok)
    pad = self._tok.pad_token_id
    self.pad_id = int(pad if pad is not None else self._tok.eos_token_id)
    if self._tok.pad_token is None:
      self._tok.pad_token = self._tok.eos_token

  def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as `WordTokenizer.encode` (ids include CLIP's BOS/EOS tokens)."""
    if isinstance(texts, str):
      raise TypeError("encode expects a list of strings, got a single str")
    out = self._tok(list(texts), padding="max_length", truncation=True, max_length=max_len,
                    return_tensors="np")
    ids = np.asarray(out["input_ids"], np.int32)
    mask = np.asarray(out["attention_mask"]).astype(bool)
    return ids, mask


def make_tokenizer(clip_path: Optional[str] = None, vocab: Optional[Sequence[str]] = None):
  """Returns the tokenizer for motion descriptions.

  Args:
    clip_path: folder with a saved CLIP tokenizer (`vocab.json`, `merges.txt`); takes precedence.
    vocab: word-level vocabulary from `build_vocab` (used when `clip_path` is not given).

  Returns:
    An object with `encode(texts, max_len) -> (ids int32 [B, L], mask bool [B, L])`,
    `vocab_size` and `pad_id`.

  Raises:
    ValueError: if neither is given, or the CLIP folder lacks vocab.json / merges.txt.
  """
  if clip_path:
    return ClipTokenizer(clip_path)
  if vocab is None:
    raise ValueError("make_tokenizer needs clip_path (a local CLIP folder) or vocab (build_vocab)")
  return WordTokenizer(vocab)


def _warn_once(msg: str) -> None:
  logging_utils.announce_once(msg)
