"""Stages of jaxtalk. Each stage is a module `jaxtalk/tasks/<stage>.py` exposing

    def get_task(config, *, mesh) -> Task

where `config` is the stage's resolved ml_collections config (`configs/<stage>.py`). `train.py`
imports the module named by `config.task` (e.g. "jaxtalk.tasks.posetalk.pose_vae") and runs one
loop for
every stage; everything stage-specific lives in the `Task` it returns.

Batch layout (produced by `jaxtalk/core/input_pipeline.py`, real or synthetic; every array is a
global
`jax.Array` with the batch dimension sharded over ('data', 'fsdp')). A stage reads only the keys
it needs; `config.input.keys` lists them so the pipeline can skip decoding the rest:

  frames       [B, T, H, W, 3] float32 in [-1, 1]   aligned face crops at 25 fps
  source       [B, H, W, 3]    float32 in [-1, 1]   identity frame from another time of the clip
  source_pose  [B, 6]          float32              normalised pose of the source frame
  pose         [B, T, 6]       float32              normalised (yaw, pitch, roll, tx, ty, scale)
  gaze         [B, T, 2]       float32              normalised (pitch, yaw)
  mel          [B, T, 16, 80]  float32              per-frame log-mel window (Wav2Lip parameters),
                                                    window t covers frames t-2..t+2 (centred)
  mouth_box    [B, T, 4]       float32 in [0, 1]    (x0, y0, x1, y1) of the mouth in the crop
  text_ids     [B, Lt]         int32                tokenised description (0 = padding)
  text_mask    [B, Lt]         bool
  emotion      [B]             int32                index into data_pipelines.schema.EMOTIONS
  speaker      [B]             int32                index of the speaker within the dataset
  mask         [B, T]          bool                 valid frames (False = padding)

Optional keys (only when listed in `config.input.keys`; `input_pipeline.OPTIONAL_KEYS`), e.g.:

  landmarks         [B, T, 478, 2] float32          FaceMesh (x, y) in [0, 1] of the crop (468
                                                    mesh + 10 iris points; may leave [0, 1]
                                                    after random crop); regions / masks from
                                                    them: `jaxtalk.features.regions`
  source_landmarks  [B, 478, 2]    float32          landmarks of the source frame
  expression, eye_features, source_expression, source_eye_features, wav2vec, text_embedding:
                                                    see `jaxtalk/core/input_pipeline.py`

Pose/gaze are normalised with the dataset's mean/std from `dataset_info.json`; raw units are
radians for angles, and crop-relative units for (tx, ty, scale).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Optional

import jax

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  """What a stage adds to the training loop.

  Attributes:
    init: `(rng, batch) -> params`: trainable params of the stage's main model(s). Leaves may be
      `nn.LogicallyPartitioned` boxes (from `nn.with_logical_partitioning`); train.py unboxes
      them and shards with the config's rules. Called under `jax.eval_shape` and `jax.jit`.
    loss: `(params, batch, rng, frozen, step) -> (loss, aux)`: scalar float32 loss to minimise and
      a dict of named scalars. Keys starting with `loss_` are loss terms (checked for NaN/Inf and
      logged as `train/loss_*`); other keys are logged as `train/<key>`. When a discriminator is
      used, `frozen` also carries `"disc": disc_params` (read-only for the generator step).
    frozen: read-only params of earlier stages (loaded from their params-only checkpoints) and any
      fixed pretrained networks; passed to `loss`/`evaluate`; never updated. May be empty.
    evaluate: optional `(params, batch, frozen) -> metrics` run every `config.eval_every` steps on
      held-out batches; metrics are averaged over `config.eval_batches` batches and logged as
      `eval/<key>`. May return images under keys starting with `image_` ([N, H, W, 3] in [-1, 1]).
    infer: optional `(params, frozen, inputs) -> outputs`: the stage's inference function, which
      `jaxtalk export` traces with a symbolic batch dimension. `infer_example` gives example
      inputs (a dict of arrays with batch dimension 1).
    disc_init / disc_loss: optional discriminator. `disc_loss(disc_params, params, batch, rng,
      frozen, step) -> (loss, aux)`; updated by its own optimizer (`config.disc_optax`)
      alternating with the generator, every step.
  """

  init: Callable[..., PyTree]
  loss: Callable[..., tuple[jax.Array, Metrics]]
  frozen: PyTree = dataclasses.field(default_factory=dict)
  evaluate: Optional[Callable[..., Metrics]] = None
  infer: Optional[Callable[..., PyTree]] = None
  infer_example: Optional[Callable[[], PyTree]] = None
  disc_init: Optional[Callable[..., PyTree]] = None
  disc_loss: Optional[Callable[..., tuple[jax.Array, Metrics]]] = None


# Module paths of stages before the per-paper layout (jaxtalk/tasks/posetalk/): the `task` of
# config.json files written by older versions, so their runs still resume and export.
MOVED_TASKS = {f"jaxtalk.tasks.{name}": f"jaxtalk.tasks.posetalk.{name}"
               for name in ("coarse", "refine", "enhancer", "pld", "pose_vae")}


def task_module(name: str) -> str:
  """The module path of the stage `name` (a `config.task`), following `MOVED_TASKS`."""
  return MOVED_TASKS.get(name, name)


def resolve_config(config) -> None:
  """Lets the stage `config.task` fill in, in place, what its config takes from the data (a
  module-level `resolve_config(config)`, optional; e.g. the pld stage's wav2vec feature size).
  Configs never read the disk: train.py calls this before writing the stage's config.json, and
  `get_task` calls it too (idempotent), so a config built in code gets the same values."""
  module = importlib.import_module(task_module(config.task))
  if hasattr(module, "resolve_config"):
    module.resolve_config(config)


def get_task(config, *, mesh) -> Task:
  """Imports `config.task` (a module path, see `task_module`), resolves the config
  (`resolve_config`) and calls the module's `get_task(config, mesh=mesh)`."""
  resolve_config(config)
  module = importlib.import_module(task_module(config.task))
  return module.get_task(config, mesh=mesh)
