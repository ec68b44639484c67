"""Tests for jaxtalk.features.text: word-level vocab/tokenizer, CLIP tokenizer and text encoders."""

import json

import numpy as np
import pytest

from jaxtalk.features import text


def write_tiny_clip_tokenizer(path):
  """Writes a tiny CLIP BPE vocabulary (letters + a few merges) to `path`; returns vocab size."""
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(",.'!?")
  tokens = letters + [c + "</w>" for c in letters]
  merges = [("h", "e</w>"), ("n", "o"), ("s", "h"), ("l", "e"), ("t", "h")]
  tokens += ["".join(m) for m in merges]
  tokens += ["<|startoftext|>", "<|endoftext|>"]
  vocab = {t: i for i, t in enumerate(tokens)}
  path.mkdir(parents=True, exist_ok=True)
  (path / "vocab.json").write_text(json.dumps(vocab))
  lines = ["#version: 0.2"] + [" ".join(m) for m in merges]
  (path / "merges.txt").write_text("\n".join(lines) + "\n")
  return len(vocab)


def test_split_words_lowercases_and_splits_punctuation():
  assert text.split_words("He nods, then LOOKS left.") == [
      "he", "nods", ",", "then", "looks", "left", "."]
  assert text.split_words("don't  stop!") == ["don't", "stop", "!"]


def test_build_vocab_is_deterministic_and_reserved():
  texts = ["He nods slowly.", "she shakes her head", "He looks left, then nods."]
  v1 = text.build_vocab(texts)
  v2 = text.build_vocab(list(reversed(texts)))
  assert v1 == v2
  assert v1[:2] == ["<pad>", "<unk>"]
  # Most frequent first: "he", "nods", "." each appear twice; ties alphabetical.
  assert v1[2:5] == [".", "he", "nods"]
  assert len(set(v1)) == len(v1)
  small = text.build_vocab(texts, max_size=4)
  assert small == ["<pad>", "<unk>", ".", "he"]
  with pytest.raises(ValueError):
    text.build_vocab(texts, max_size=1)


def test_word_tokenizer_encode():
  vocab = text.build_vocab(["he nods", "she shakes her head"])
  tok = text.make_tokenizer(vocab=vocab)
  ids, mask = tok.encode(["He nods wildly", "", "she shakes her head and then nods"], max_len=5)
  assert ids.dtype == np.int32 and ids.shape == (3, 5)
  assert mask.dtype == bool and mask.shape == (3, 5)
  assert ids[0, 0] == vocab.index("he") and ids[0, 1] == vocab.index("nods")
  assert ids[0, 2] == text.UNK_ID and ids[0, 3] == text.PAD_ID
  np.testing.assert_array_equal(mask[0], [True, True, True, False, False])
  assert not mask[1].any()
  assert mask[2].all()  # truncated to max_len
  assert tok.decode(ids[0]) == "he nods <unk>"
  with pytest.raises(TypeError):
    tok.encode("a single string", 4)
  with pytest.raises(ValueError):
    text.make_tokenizer()
  with pytest.raises(ValueError):
    text.WordTokenizer(["a", "b"])


def test_clip_tokenizer_from_local_folder(tmp_path):
  n = write_tiny_clip_tokenizer(tmp_path / "clip")
  tok = text.make_tokenizer(clip_path=str(tmp_path / "clip"))
  assert tok.vocab_size == n
  ids, mask = tok.encode(["he nods", "she shakes her head slowly"], max_len=8)
  assert ids.shape == (2, 8) and ids.dtype == np.int32 and mask.dtype == bool
  assert mask[1].all() and not mask[0].all()
  assert ids.max() < n
  # BOS first; the sequence of the short text ends with EOS before padding.
  assert ids[0, 0] == ids[1, 0]
  assert ids[0, int(mask[0].sum()) - 1] == n - 1


def test_clip_tokenizer_missing_files_error(tmp_path):
  (tmp_path / "clip").mkdir()
  (tmp_path / "clip" / "vocab.json").write_text("{}")
  with pytest.raises(ValueError, match="merges.txt"):
    text.make_tokenizer(clip_path=str(tmp_path / "clip"))


def _tiny_clip_folder(path):
  from transformers import CLIPTextConfig, FlaxCLIPTextModel
  n = write_tiny_clip_tokenizer(path)
  cfg = CLIPTextConfig(vocab_size=n, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=16, bos_token_id=n - 2,
                       eos_token_id=n - 1, pad_token_id=n - 1)
  FlaxCLIPTextModel(cfg, seed=0).save_pretrained(str(path))
  return n


def test_clip_text_encoder_from_local_folder(tmp_path):
  import jax
  import jax.numpy as jnp
  from jaxtalk.models import text_encoder
  _tiny_clip_folder(tmp_path / "clip")
  enc = text_encoder.ClipTextEncoder(str(tmp_path / "clip"))
  tok = text.make_tokenizer(clip_path=str(tmp_path / "clip"))
  ids, mask = tok.encode(["he nods", "she shakes her head"], max_len=12)
  tokens, pooled = jax.jit(enc.__call__)(enc.params, jnp.asarray(ids), jnp.asarray(mask))
  assert tokens.shape == (2, 12, 32) and pooled.shape == (2, 32)
  assert tokens.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(tokens)[~mask], 0.0)
  assert not np.allclose(pooled[0], pooled[1])
  with pytest.raises(ValueError, match="config.json"):
    text_encoder.ClipTextEncoder(str(tmp_path))


def test_trainable_text_encoder_pads_and_pools():
  import jax
  import jax.numpy as jnp
  from jaxtalk.models import text_encoder
  enc = text_encoder.TrainableTextEncoder(vocab_size=20, width=16, depth=1, num_heads=2)
  ids = jnp.array([[3, 4, 0, 0], [5, 6, 7, 8]])
  mask = ids > 0
  params = enc.init(jax.random.PRNGKey(0), ids, mask)
  tokens, pooled = enc.apply(params, ids, mask)
  assert tokens.shape == (2, 4, 16) and pooled.shape == (2, 16)
  np.testing.assert_array_equal(np.asarray(tokens[0, 2:]), 0.0)
  # Padding content does not matter.
  tokens2, _ = enc.apply(params, ids.at[0, 2:].set(9), mask)
  np.testing.assert_allclose(tokens2[0, :2], tokens[0, :2], atol=1e-6)
