"""Config pieces shared by every stage (`configs/<stage>.py` builds on these).

Nothing here reads flags; stage configs call these helpers and then set their own values.
"""

import ml_collections


def parse_arg(arg, **defaults):
  """Parses a config argument string like "size=tiny,res=128" into a ConfigDict.

  Keys not in `defaults` raise ValueError (so a typo in `--config=...:sise=tiny` fails loudly);
  values are converted to the type of their default (bool accepts true/false/1/0).
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    if not item:
      continue
    if "=" not in item:
      raise ValueError(f"config arg {item!r}: expected key=value (in {arg!r})")
    key, value = item.split("=", 1)
    if key not in defaults:
      raise ValueError(f"config arg {key!r} unknown; valid: {sorted(defaults)}")
    default = defaults[key]
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config arg {key}={value!r}: expected true/false")
      value = value.lower() in ("true", "1")
    elif default is not None:
      value = type(default)(value)
    out[key] = value
  return out


def base_config() -> ml_collections.ConfigDict:
  """Fields every stage has. Stage configs override them."""
  c = ml_collections.ConfigDict()
  c.task = ""                      # module path, e.g. "jaxtalk.tasks.posetalk.pose_vae"
  c.seed = 0
  c.total_steps = 1000
  c.batch_size = 16                # global batch size (all processes)
  c.grad_accum_steps = 1           # micro-batches per update (batch_size must divide)
  c.dtype = "float32"              # compute dtype: float32 | bfloat16
  c.log_every = 50
  c.eval_every = 1000              # 0 disables evals
  c.eval_batches = 4
  # Evaluators the loop runs at every eval (jaxtalk/evaluators/common.py): name -> dict(type=...,
  # every=0 (= eval_every), and the evaluator's own arguments); logged as eval/<name>/<metric>.
  c.evals = ml_collections.ConfigDict()
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.ema_decay = 0.0                # > 0 keeps an EMA of params (used for eval and export)
  c.select_best = ""               # e.g. "eval/loss": the final params are those of the eval
  c.select_best_mode = "min"       # (incl. one before training) where it was lowest ("max")
  c.progress = True                # progress bar on process 0
  c.time_budget_s = 0.0            # > 0: finish (eval, final params) after this many seconds
                                   # of training in this run, even before total_steps

  # Mesh: one of the sizes may be -1 (filled from the device count).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, dcn_data=1))
  c.sharding_rules = ()            # overrides of jaxtalk.core.sharding.DEFAULT_RULES

  # Optimizer (see jaxtalk/core/optimizers.py).
  c.optax = ml_collections.ConfigDict()
  c.optax.name = "adamw"           # adamw | adam | sgd | lamb
  c.optax.lr = 1e-4
  c.optax.b1 = 0.9
  c.optax.b2 = 0.999
  c.optax.weight_decay = 0.0
  c.optax.schedule = "cosine"      # constant | cosine | linear
  c.optax.warmup_steps = 0
  c.optax.end_lr_factor = 0.0
  c.optax.clip_grad_norm = 1.0     # 0 disables clipping
  c.optax.lr_mults = ()            # ((regex, multiplier), ...) per-parameter-group lr
  c.optax.freeze = ()              # (regex, ...) parameters matching are not updated

  # Optional discriminator optimizer, used when the task has a discriminator.
  c.disc_optax = c.optax.copy_and_resolve_references()

  # Input pipeline (see jaxtalk/core/input_pipeline.py).
  c.input = ml_collections.ConfigDict()
  c.input.data_dir = ""            # directory with ArrayRecord shards + dataset_info.json
  c.input.synthetic = False        # True: synthetic batches with the same schema (smoke runs)
  c.input.window = 20              # frames per training window (T)
  c.input.resolution = 256         # crop size fed to the model (random-crop augmentation target)
  c.input.keys = ()                # batch keys this stage reads (empty: all)
  c.input.shuffle_seed = 0
  c.input.num_workers = 0          # grain worker processes (0: in the main process)
  c.input.exclude = ()             # clip/speaker ids neither trained nor evaluated on
  c.input.eval_tail = 0.0          # > 0: eval on this last fraction of every training clip
  c.input.holdout = ()             # clip/speaker ids held out for evaluation

  # Frozen params of earlier stages: {name: params-only checkpoint directory}.
  c.init_from = ml_collections.ConfigDict()
  return c
