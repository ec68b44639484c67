"""The one training loop of jaxtalk: every stage runs through `train_and_evaluate`.

A stage (`jaxtalk/tasks/<stage>.py`, named by `config.task`) returns a `jaxtalk.tasks.Task` with
its init / loss / evaluate functions and frozen inputs; everything else happens here, top to
bottom:

  mesh + rules  ->  task  ->  data iterator  ->  sharded init or resume  ->  jitted update step
  -> loop { step, NaN check, logs, evals, checkpoints, preemption }  ->  final params-only save.

Sharding: parameters carry logical axis names (`nn.with_logical_partitioning`); the config's
rules (`jaxtalk.core.sharding.get_rules`) map them to the `('data', 'fsdp', 'tensor')` mesh. Params
are created already sharded (`jax.eval_shape` -> `nn.get_partition_spec` ->
`nn.logical_to_mesh_sharding` -> `jax.jit(init, out_shardings=...)`); optimizer and EMA state
follow their parameter's sharding. The batch dimension is split over ('data', 'fsdp').

Workdir layout:
  config.json            resolved config
  checkpoints/<step>/    orbax: train state + grain iterator state (resume by re-running)
  tensorboard/           TensorBoard scalars (train/*, eval/*) and eval images, process 0
  metrics.jsonl          the same scalars, one JSON line per log/eval event, process 0
  params/                final params only (EMA params if `config.ema_decay > 0`)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

from absl import logging
from flax import linen as nn
from flax.core import meta
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax

from jaxtalk.core import checkpointing
from jaxtalk.core import logging_utils
from jaxtalk.core import optimizers
from jaxtalk.core import sharding as sharding_lib
from jaxtalk import tasks as tasks_lib

PyTree = Any

# Environment variables whose presence means "this is one process of a multi-process job".
_MULTIPROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "JAXTALK_DISTRIBUTED")


# =============================================================================================
# Multi-process start-up.
# =============================================================================================

def maybe_initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize()` when this process is part of a multi-process job.

  Detected from the environment: `JAX_COORDINATOR_ADDRESS` (explicit; with `JAX_NUM_PROCESSES`
  and `JAX_PROCESS_ID` when no cluster environment provides them), `JAXTALK_DISTRIBUTED=1`
  (set by `launch/tpu/run_pod.sh`; jax auto-detects the TPU pod), SLURM with more than one task
  (`SLURM_NTASKS`), or Open MPI with more than one rank. Single-process runs skip it.
  Returns whether it initialised.
  """
  env = os.environ
  multi = any(env.get(k) for k in _MULTIPROCESS_ENV)
  multi |= int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env
  multi |= int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1
  if not multi or env.get("JAXTALK_DISTRIBUTED") == "0":
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if env.get("JAX_NUM_PROCESSES") and env.get("JAX_PROCESS_ID"):
    # Explicit launch (any cluster, or several processes on one machine): the coordinator
    # address comes from JAX_COORDINATOR_ADDRESS.
    kwargs = dict(num_processes=int(env["JAX_NUM_PROCESSES"]),
                  process_id=int(env["JAX_PROCESS_ID"]))
    if jax.config.jax_platforms in ("cpu",) or env.get("JAX_PLATFORMS") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


# =============================================================================================
# Helpers.
# =============================================================================================

def _strip_boxes(tree: PyTree) -> PyTree:
  """Removes flax partitioning boxes without adding sharding constraints (abstract values)."""
  is_box = lambda x: isinstance(x, meta.AxisMetadata)
  def strip(x):
    return x.value if hasattr(x, "value") else x.unbox()
  return jax.tree.map(lambda x: strip(x) if is_box(x) else x, tree, is_leaf=is_box)


def _fit_shardings(shardings: PyTree, abstract: PyTree, mesh: Mesh) -> PyTree:
  """Replicates dimensions whose size the mesh axes assigned to them do not divide.

  E.g. an output projection to 3 RGB channels annotated ("mlp", "embed") stays unsplit along
  its size-3 dim instead of failing; large dims keep their sharding.
  """
  def fit(sh, x):
    spec = list(sh.spec) + [None] * (len(x.shape) - len(sh.spec))
    changed = False
    for d, axes in enumerate(spec):
      if axes is None:
        continue
      names = axes if isinstance(axes, tuple) else (axes,)
      n = int(np.prod([mesh.shape[a] for a in names]))
      if x.shape[d] % n:
        spec[d], changed = None, True
    return NamedSharding(mesh, P(*spec)) if changed else sh
  return jax.tree.map(fit, shardings, abstract,
                      is_leaf=lambda v: isinstance(v, NamedSharding))


def _is_loss_term(key: str) -> bool:
  return key == "loss" or key.startswith("loss_") or key.startswith("disc_loss")


def _to_host(tree: PyTree) -> PyTree:
  """Global jax.Arrays -> numpy on every process (gathers across hosts when needed)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _path_key(path) -> tuple[str, ...]:
  return tuple(optimizers.path_str((k,)) for k in path)


def _follow_param_shardings(tree: PyTree, params: PyTree, param_shardings: PyTree,
                            mesh: Mesh) -> PyTree:
  """Shardings for a pytree (optimizer state) whose leaves mirror parameters.

  A leaf whose key path ends with a parameter's key path and has its shape gets that
  parameter's sharding (mu/nu of Adam, EMA, ...); everything else (counts, scalars) is
  replicated. Works through optax wrappers (chain, multi_transform, masked) without knowing them.
  """
  by_path = {}
  for (path, x), s in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                          jax.tree.leaves(param_shardings,
                                          is_leaf=lambda v: isinstance(v, NamedSharding))):
    by_path[_path_key(path)] = (tuple(x.shape), s)
  rep = NamedSharding(mesh, P())

  def find(path, x):
    key = _path_key(path)
    for i in range(len(key)):
      hit = by_path.get(key[i:])
      if hit is not None and hit[0] == tuple(x.shape):
        return hit[1]
    return rep

  return jax.tree_util.tree_map_with_path(find, tree)


def _abstract_batch(batch: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      batch)


def _split_micro(batch: PyTree, accum: int, mesh: Mesh) -> PyTree:
  """[B, ...] -> [A, B/A, ...]; micro-batch i holds examples i, A+i, 2A+i, ... .

  Each device's contiguous block of the batch splits into local micro-batches, so the split
  needs no communication.
  """
  def split(x):
    y = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
    y = jnp.swapaxes(y, 0, 1)
    spec = P(None, ("data", "fsdp"), *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, spec))
  return jax.tree.map(split, batch)


def _grads(fn: Callable, params: PyTree, batch: PyTree, rng: jax.Array, accum: int,
           mesh: Mesh):
  """Mean loss, aux and gradients of `fn(params, batch, rng) -> (loss, aux)` over `accum`
  micro-batches (gradient accumulation with lax.scan; accum=1 is a plain value_and_grad)."""
  grad_fn = jax.value_and_grad(fn, has_aux=True)
  if accum == 1:
    (loss, aux), grads = grad_fn(params, batch, rng)
    return loss, aux, grads
  micro = _split_micro(batch, accum, mesh)

  def body(carry, xs):
    i, mb = xs
    (loss, aux), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
    acc = jax.tree.map(jnp.add, carry, (loss, aux, grads))
    return acc, None

  mb0 = jax.tree.map(lambda x: x[0], micro)
  shapes = jax.eval_shape(lambda p, b: grad_fn(p, b, rng), params, mb0)
  (loss_s, aux_s), grads_s = shapes
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32 if jnp.issubdtype(
      s.dtype, jnp.floating) else s.dtype), (loss_s, aux_s, grads_s))
  total, _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
  loss, aux, grads = jax.tree.map(lambda x: x / accum, total)
  grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
  return loss, aux, grads


# =============================================================================================
# Train state: sharded creation and the update step.
# =============================================================================================

class Trainer:
  """Builds the sharded train state and the jitted update/eval steps for one task.

  Attributes:
    state_shardings: pytree of NamedSharding for the train state.
    abstract_state: pytree of ShapeDtypeStruct (with shardings) of the train state.
    param_shardings: NamedShardings of the (generator) params.
  """

  def __init__(self, config, task: tasks_lib.Task, mesh: Mesh, example_batch: PyTree):
    self.config = config
    self.task = task
    self.mesh = mesh
    self.rules = sharding_lib.get_rules(config)
    self.accum = int(config.get("grad_accum_steps", 1) or 1)
    self.ema_decay = float(config.get("ema_decay", 0.0) or 0.0)
    self.has_disc = task.disc_init is not None and task.disc_loss is not None
    self.evals: Optional[list] = None  # config.evals, built at the first eval
    self.infer = None
    self.best: Optional[BestParams] = None  # config.select_best, set by train_and_evaluate
    rng = jax.random.PRNGKey(int(config.seed))
    self.init_rng, self.train_rng = jax.random.split(rng)
    abstract_batch = _abstract_batch(example_batch)

    with jax.set_mesh(mesh):
      # Logical specs of the params, from an abstract (shape-only) init. Init is traced without
      # the logical rules: params get their layout from `out_shardings`, not from constraints.
      boxed = jax.eval_shape(task.init, self.init_rng, abstract_batch)
      self.abstract_params = _strip_boxes(boxed)
      self.param_shardings = _fit_shardings(
          sharding_lib.logical_to_sharding(boxed, mesh, self.rules), self.abstract_params, mesh)
      self.tx = optimizers.make_optimizer(config.optax, config.total_steps, self.abstract_params)
      self.schedule = optimizers.make_schedule(config.optax, config.total_steps)
      if self.has_disc:
        dboxed = jax.eval_shape(task.disc_init, self.init_rng, abstract_batch)
        self.abstract_disc = _strip_boxes(dboxed)
        self.disc_shardings = _fit_shardings(
            sharding_lib.logical_to_sharding(dboxed, mesh, self.rules), self.abstract_disc, mesh)
        disc_cfg = config.get("disc_optax", None) or config.optax
        self.disc_tx = optimizers.make_optimizer(disc_cfg, config.total_steps, self.abstract_disc)
      abstract_state = jax.eval_shape(self._init_fn, self.init_rng, abstract_batch)

    shardings = {}
    for key, value in abstract_state.items():
      if key in ("params", "ema_params"):
        shardings[key] = self.param_shardings
      elif key == "opt_state":
        shardings[key] = _follow_param_shardings(
            value, self.abstract_params, self.param_shardings, mesh)
      elif key == "disc_params":
        shardings[key] = self.disc_shardings
      elif key == "disc_opt_state":
        shardings[key] = _follow_param_shardings(
            value, self.abstract_disc, self.disc_shardings, mesh)
      else:
        shardings[key] = jax.tree.map(lambda _: NamedSharding(mesh, P()), value)
    self.state_shardings = shardings
    self.abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        abstract_state, shardings)
    self._train_step = jax.jit(self._train_step_fn, donate_argnums=(0,),
                               out_shardings=(self.state_shardings, None))
    self._eval_step = jax.jit(self._eval_step_fn) if task.evaluate is not None else None

  def _context(self):
    """Mesh + logical-rules context under which everything is traced."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn.logical_axis_rules(self.rules))
    return stack

  # ------------------------------------------------------------------ init
  def _init_fn(self, rng, batch):
    g_rng, d_rng = jax.random.split(rng)
    params = nn.unbox(self.task.init(g_rng, batch))
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt_state": self.tx.init(params)}
    if self.ema_decay > 0:
      state["ema_params"] = jax.tree.map(jnp.copy, params)
    if self.has_disc:
      disc = nn.unbox(self.task.disc_init(d_rng, batch))
      state["disc_params"] = disc
      state["disc_opt_state"] = self.disc_tx.init(disc)
    return state

  def init_state(self, example_batch: PyTree) -> PyTree:
    """Creates the train state directly in its sharded layout (never whole on one device)."""
    with jax.set_mesh(self.mesh):
      init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
      return init(self.init_rng, example_batch)

  # ------------------------------------------------------------------ update
  def _train_step_fn(self, state, batch, frozen):
    step = state["step"]
    rng = jax.random.fold_in(self.train_rng, step)
    g_rng, d_rng = jax.random.split(rng)
    gen_frozen = dict(frozen, disc=state["disc_params"]) if self.has_disc else frozen

    def gen_loss(params, mb, r):
      return self.task.loss(params, mb, r, gen_frozen, step)

    loss, aux, grads = _grads(gen_loss, state["params"], batch, g_rng, self.accum, self.mesh)
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = dict(state, step=step + 1, params=params, opt_state=opt_state)
    metrics = {"loss": loss, **aux, "grad_norm": optax.global_norm(grads),
               "lr": self.schedule(step)}
    if self.ema_decay > 0:
      d = self.ema_decay
      new["ema_params"] = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p,
                                       state["ema_params"], params)
    if self.has_disc:
      def disc_loss(dparams, mb, r):
        return self.task.disc_loss(dparams, params, mb, r, frozen, step)
      dl, daux, dgrads = _grads(disc_loss, state["disc_params"], batch, d_rng, self.accum,
                                self.mesh)
      dupdates, dopt = self.disc_tx.update(dgrads, state["disc_opt_state"],
                                           state["disc_params"])
      new["disc_params"] = optax.apply_updates(state["disc_params"], dupdates)
      new["disc_opt_state"] = dopt
      metrics["disc_loss"] = dl
      metrics.update({("disc_" + k if not k.startswith("disc_") else k): v
                      for k, v in daux.items()})
      metrics["disc_grad_norm"] = optax.global_norm(dgrads)
    return new, metrics

  def train_step(self, state, batch, frozen):
    """One update (generator, then discriminator if any). `state` is donated."""
    with self._context():
      return self._train_step(state, batch, frozen)

  # ------------------------------------------------------------------ eval
  def _eval_step_fn(self, params, batch, frozen):
    return self.task.evaluate(params, batch, frozen)

  def eval_step(self, params, batch, frozen):
    with self._context():
      return self._eval_step(params, batch, frozen)


# =============================================================================================
# Preemption (SIGTERM) handling.
# =============================================================================================

class _StopSignal:
  """Sets a flag on SIGTERM; the loop checks it after each step, saves and exits cleanly."""

  def __init__(self):
    self.event = threading.Event()
    self._previous = None

  def _handler(self, signum, frame):
    del frame
    logging.warning("received signal %d: saving a checkpoint and stopping", signum)
    self.event.set()

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # Not in the main thread: no handler (the loop still works).
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      # Every host must agree on the step at which to save.
      try:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        if multihost_utils.reached_preemption_sync_point(step):
          return True
      except Exception:  # pylint: disable=broad-except  # preemption service not enabled.
        pass
    return self.event.is_set()


# =============================================================================================
# The loop.
# =============================================================================================

def _write_config(config, workdir: str):
  """Fills in what the config takes from the data (`tasks.resolve_config`, every process), then
  writes `<workdir>/config.json` (process 0)."""
  tasks_lib.resolve_config(config)
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)


def _check_finite(step: int, metrics: dict):
  bad = {k: v for k, v in metrics.items() if _is_loss_term(k) and not np.isfinite(v)}
  if bad:
    terms = [k for k in bad if k != "loss"] or ["loss"]
    raise FloatingPointError(
        f"non-finite loss at step {step}: term {', '.join(terms)} = "
        f"{', '.join(str(bad[k]) for k in terms)} (all terms: "
        + ", ".join(f"{k}={v:.6g}" for k, v in metrics.items() if _is_loss_term(k)) + ")")


def _run_eval(trainer: Trainer, config, mesh, params, frozen, input_pipeline) -> tuple[dict, dict]:
  """Averages `task.evaluate` over `config.eval_batches` held-out batches (fresh iterator, so
  every eval sees the same batches). Returns (scalars, images).

  Metrics named `image_*` ([N, H, W, 3] in [-1, 1]) and `video_*` ([N, T, H, W, 3], shown as a
  strip of frames) are written to TensorBoard from the first batch instead of being averaged.
  """
  it = input_pipeline.create_iterator(config, mesh=mesh, split="eval")
  sums, count, images = {}, 0, {}
  for _ in range(max(1, int(config.get("eval_batches", 1)))):
    try:
      batch = next(it)
    except StopIteration:
      break
    out = trainer.eval_step(params, input_pipeline.to_global(batch, mesh), frozen)
    out = _to_host(out)
    for k, v in out.items():
      if k.startswith("image_"):
        images.setdefault(f"eval/{k}", np.asarray(v))
      elif k.startswith("video_"):  # [N, T, H, W, C] -> a strip of up to 8 frames per sample.
        v = np.asarray(v)[:, :8]
        images.setdefault(f"eval/{k}", np.concatenate(list(v.transpose(1, 0, 2, 3, 4)), axis=2))
      else:
        sums[k] = sums.get(k, 0.0) + float(np.mean(v))
    count += 1
  close = getattr(it, "close", None)
  if callable(close):
    close()
  return {f"eval/{k}": v / max(count, 1) for k, v in sums.items()}, images


def _run_config_evals(trainer: Trainer, params, frozen) -> dict:
  """The evaluators of `config.evals` (`jaxtalk.evaluators.common`), built at the first eval,
  on the task's jitted `infer`: scalars as `eval/<name>/<metric>`. Single-process runs only
  (they feed host arrays to `infer`); skipped with a log line otherwise."""
  if trainer.evals is None:
    from jaxtalk.evaluators import common as evals_lib  # pylint: disable=g-import-not-at-top
    trainer.evals = []
    if trainer.config.get("evals") and trainer.task.infer is None:
      raise ValueError(f"{trainer.config.task}: config.evals needs a task with `infer`")
    if trainer.config.get("evals") and jax.process_count() > 1:
      logging_utils.log_info("config.evals skipped: %d processes (single-process only)",
                             jax.process_count())
    elif trainer.config.get("evals"):
      trainer.evals = evals_lib.from_config(trainer.config)
      trainer.infer = jax.jit(trainer.task.infer)
  out = {}
  for name, evaluator in trainer.evals:
    out.update({f"eval/{name}/{k}": float(v)
                for k, v in evaluator(trainer.infer, params, frozen).items()})
  return out


def itstime(step: int, every: int, *, last: bool = False) -> bool:
  """Periodic work at `step` (big_vision's `itstime`): every `every` steps (0: never) and at the
  last step."""
  return last or (every > 0 and step % every == 0)


class _MetricLog:
  """Train-metric averaging (one step late, so dispatch stays asynchronous) and the log sinks:
  absl log, TensorBoard, `metrics.jsonl` and the returned history."""

  def __init__(self, workdir: str, progress):
    self.writer = logging_utils.MetricWriter(os.path.join(workdir, "tensorboard"))
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.progress = progress
    self.history: list[dict] = []
    self.sums: dict[str, float] = {}
    self.count = 0
    self.pending = None
    self.t_last = time.time()

  def add(self, step: int, metrics) -> None:
    """Queues this step's device metrics and absorbs the previous step's."""
    self.flush()
    self.pending = (step, metrics)

  def flush(self) -> None:
    """Fetches the queued step's metrics (raising on a non-finite loss term)."""
    if self.pending is None:
      return
    s, m = self.pending
    self.pending = None
    m = {k: float(np.mean(v)) for k, v in jax.device_get(m).items()}
    _check_finite(s, m)
    for k, v in m.items():
      self.sums[k] = self.sums.get(k, 0.0) + v
    self.count += 1
    self.progress.update(1, loss=m["loss"])

  def write_train(self, step: int) -> None:
    now = time.time()
    self.record({"step": step, **{f"train/{k}": v / self.count for k, v in self.sums.items()},
                 "train/steps_per_sec": self.count / max(now - self.t_last, 1e-9)})
    self.sums, self.count, self.t_last = {}, 0, now

  def record(self, entry: dict) -> None:
    self.history.append(entry)
    logging_utils.log_info("step %d: %s", entry["step"], ", ".join(
        f"{k}={v:.4g}" for k, v in entry.items()
        if k != "step" and (k.startswith("eval/") or _is_loss_term(k.split("/", 1)[-1])
                            or k.endswith("steps_per_sec"))))
    self.writer.write_scalars(entry["step"], {k: v for k, v in entry.items() if k != "step"})
    if jax.process_index() == 0:
      with open(self.path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def _check_batching(config, mesh: Mesh) -> None:
  accum = int(config.get("grad_accum_steps", 1) or 1)
  n_batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % accum or (config.batch_size // accum) % n_batch_shards:
    raise ValueError(
        f"batch_size={config.batch_size} must split into grad_accum_steps={accum} micro-batches "
        f"each divisible by data*fsdp={n_batch_shards}")


def _train_iterator_and_example(config, mesh, input_pipeline):
  """The train iterator and one global batch for shapes (the iterator is rewound to it)."""
  train_iter = input_pipeline.create_iterator(config, mesh=mesh, split="train")
  rewind = train_iter.get_state() if hasattr(train_iter, "get_state") else None
  example = input_pipeline.to_global(next(train_iter), mesh)
  if rewind is not None:
    train_iter.set_state(rewind)
  else:
    train_iter = input_pipeline.create_iterator(config, mesh=mesh, split="train")
  return train_iter, example


def _init_or_resume(trainer: "Trainer", manager, example, train_iter):
  latest = manager.latest_step()
  if latest is None:
    return trainer.init_state(example)
  state = checkpointing.restore_train_state(manager, latest, trainer.abstract_state, train_iter)
  logging_utils.log_info("resumed from step %d", latest)
  return state


def _close(obj) -> None:
  close = getattr(obj, "close", None)
  if callable(close):
    close()


def _run_steps(config, trainer, state, step, train_iter, frozen, mesh, manager, log,
               stop_after, input_pipeline):
  """The training loop: step, log, eval, checkpoint; stops at `total_steps`, at the time budget,
  on SIGTERM or at `stop_after`. Returns `(state, step, preempted, budget_reached)`."""
  total_steps = int(config.total_steps)
  log_every = max(1, int(config.get("log_every", 50)))
  eval_every = int(config.get("eval_every", 0) or 0) if trainer.task.evaluate is not None else 0
  ckpt_every = max(1, int(config.get("checkpoint_every", 1000)))
  budget_s = float(config.get("time_budget_s", 0.0) or 0.0)
  t_start = time.time()
  with _StopSignal() as stop:
    while step < total_steps:
      batch = input_pipeline.to_global(next(train_iter), mesh)
      state, metrics = trainer.train_step(state, batch, frozen)
      step += 1
      log.add(step, metrics)
      stopping = stop.should_stop(step) or (stop_after is not None and step >= stop_after)
      budget_reached = budget_s > 0 and step < total_steps and time.time() - t_start >= budget_s
      if budget_reached:
        logging_utils.log_info("time budget of %.0f s reached at step %d of %d; finishing",
                               budget_s, step, total_steps)
      last = step == total_steps or budget_reached
      do_eval = eval_every > 0 and itstime(step, eval_every, last=last)
      do_ckpt = itstime(step, ckpt_every, last=last or stopping)
      if itstime(step, log_every, last=last) or do_eval or do_ckpt:
        log.flush()
      if itstime(step, log_every, last=last) or (stopping and log.count):
        log.write_train(step)
      if do_eval:
        _eval_and_log(config, trainer, state, frozen, mesh, log, step, input_pipeline)
      if do_ckpt:
        checkpointing.save_train_state(manager, step, state, train_iter, force=True)
      if budget_reached:
        return state, step, False, True
      if stopping and step < total_steps:
        logging_utils.log_info("stopping at step %d (checkpoint saved)", step)
        return state, step, True, False
    log.flush()
  return state, step, False, False


def _eval_and_log(config, trainer, state, frozen, mesh, log, step, input_pipeline) -> None:
  eval_params = state["ema_params"] if trainer.ema_decay > 0 else state["params"]
  eval_frozen = dict(frozen, disc=state["disc_params"]) if trainer.has_disc else frozen
  scalars, images = _run_eval(trainer, config, mesh, eval_params, eval_frozen, input_pipeline)
  scalars.update(_run_config_evals(trainer, eval_params, eval_frozen))
  log.record({"step": step, **scalars})
  log.writer.write_images(step, images)
  if trainer.best is not None:
    trainer.best.update(step, scalars, eval_params)
  log.t_last = time.time()


class BestParams:
  """Model selection by an eval metric (`config.select_best`, e.g. "eval/loss", with
  `config.select_best_mode` "min" or "max"): the eval params of the best eval so far are kept
  in `<workdir>/best_params/` with `<workdir>/best.json` ({"step", "metric", "value"}), and
  become the run's final params. Survives resumption (best.json is read back)."""

  def __init__(self, workdir: str, metric: str, mode: str = "min"):
    if mode not in ("min", "max"):
      raise ValueError(f"config.select_best_mode={mode!r}; expected 'min' or 'max'")
    self.metric, self.mode = metric, mode
    self.path = os.path.join(workdir, "best_params")
    self.meta_path = os.path.join(workdir, "best.json")
    self.meta = None
    if os.path.isfile(self.meta_path) and os.path.isdir(self.path):
      with open(self.meta_path) as f:
        self.meta = json.load(f)

  def _better(self, value: float) -> bool:
    if self.meta is None:
      return True
    best = float(self.meta["value"])
    return value < best if self.mode == "min" else value > best

  def update(self, step: int, scalars: dict, params) -> None:
    if self.metric not in scalars:
      raise ValueError(f"config.select_best={self.metric!r} is not an eval metric of this "
                       f"stage (it has {sorted(scalars)})")
    value = float(scalars[self.metric])
    if not self._better(value):
      return
    checkpointing.save_params(self.path, params)
    self.meta = {"step": int(step), "metric": self.metric, "value": value}
    if jax.process_index() == 0:
      tmp = self.meta_path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(self.meta, f)
      os.replace(tmp, self.meta_path)

  def final(self):
    """The selected params (host numpy), or None when no eval ran."""
    if self.meta is None:
      return None
    logging_utils.log_info("final params: the eval of step %d (%s = %.5g, best of this run)",
                           self.meta["step"], self.metric, self.meta["value"])
    return checkpointing.load_params(self.path)


def _start_selection(config, trainer, state, step, frozen, mesh, log, workdir,
                     input_pipeline) -> None:
  """Sets up `config.select_best` and, on a fresh run, evaluates the initial params (a candidate
  too: the identity, for the residual stages)."""
  if not int(config.get("eval_every", 0) or 0) or trainer.task.evaluate is None:
    raise ValueError(f"config.select_best={config.select_best!r} needs evals "
                     "(config.eval_every > 0 and a task with `evaluate`)")
  trainer.best = BestParams(workdir, config.select_best, config.get("select_best_mode", "min"))
  if step == 0:
    _eval_and_log(config, trainer, state, frozen, mesh, log, 0, input_pipeline)


def train_and_evaluate(config, workdir: str, *, mesh: Optional[Mesh] = None,
                       stop_after: Optional[int] = None) -> dict:
  """Trains the stage `config.task` in `workdir`; resumes from its latest checkpoint if any.

  Args:
    config: a stage's resolved ConfigDict (`configs/[<paper>/]<stage>.py`).
    workdir: output directory (created). Re-running with the same workdir resumes.
    mesh: device mesh (default: `jaxtalk.core.sharding.make_mesh(config.mesh)` over all devices).
    stop_after: stop (with a checkpoint, as on SIGTERM) once this many steps are done; for
      time-limited jobs and tests. The final params are only written at `config.total_steps`.

  `config.time_budget_s > 0` ends training like reaching `total_steps` (final eval, checkpoint
  and params) once this run has trained that many seconds (measured from its first step, so
  compilation counts); used by `jaxtalk demo` to fit every stage into a time budget.

  Returns:
    dict with `step` (last step done), `params` (final params, host numpy; EMA params if
    `config.ema_decay > 0`), `history` (list of `{"step": s, "train/...": ..}` and
    `{"step": s, "eval/...": ..}` dicts, one per log/eval event of this run; with
    `config.select_best` the params of the best eval instead) and `preempted`
    (True when stopped early by SIGTERM or `stop_after`) and `budget_reached` (True when
    `config.time_budget_s` ended training before `total_steps`).

  Raises:
    FloatingPointError: when a loss term becomes NaN/Inf (names the step and the term).
    ValueError: on inconsistent batch/mesh/accumulation sizes.
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top

  # ------------------------------------------------------------------ setup
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh if mesh is not None else sharding_lib.make_mesh(config.mesh)
  _check_batching(config, mesh)
  _write_config(config, workdir)
  logging_utils.log_info("mesh %s on %d devices; workdir %s", dict(mesh.shape),
                         mesh.devices.size, workdir)
  task = tasks_lib.get_task(config, mesh=mesh)
  frozen = jax.tree.map(
      lambda x: jax.device_put(x, NamedSharding(mesh, P())), task.frozen or {})
  train_iter, example = _train_iterator_and_example(config, mesh, input_pipeline)

  # ------------------------------------------------------------------ state (init or resume)
  trainer = Trainer(config, task, mesh, example)
  manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"),
                                       keep=config.get("keep_checkpoints", 3))
  state = _init_or_resume(trainer, manager, example, train_iter)
  del example
  step = int(jax.device_get(state["step"]))
  logging_utils.log_info("params:\n%s", logging_utils.param_overview(
      trainer.abstract_params, trainer.param_shardings))
  if trainer.has_disc:
    logging_utils.log_info("discriminator params:\n%s", logging_utils.param_overview(
        trainer.abstract_disc, trainer.disc_shardings))

  # ------------------------------------------------------------------ loop
  log = _MetricLog(workdir, logging_utils.Progress(int(config.total_steps), step,
                                                   bool(config.get("progress", True))))
  if config.get("select_best"):
    _start_selection(config, trainer, state, step, frozen, mesh, log, workdir, input_pipeline)
  try:
    state, step, preempted, budget_reached = _run_steps(
        config, trainer, state, step, train_iter, frozen, mesh, manager, log, stop_after,
        input_pipeline)
  finally:
    log.progress.close()
    manager.wait_until_finished()
    log.writer.flush()

  # ------------------------------------------------------------------ final params
  final = state["ema_params"] if trainer.ema_decay > 0 else state["params"]
  if not preempted:
    final = (trainer.best.final() if trainer.best else None) or final
    checkpointing.save_params(os.path.join(workdir, "params"), final)
    logging_utils.log_info("final params written to %s", os.path.join(workdir, "params"))
  log.writer.close()
  manager.close()
  _close(train_iter)
  return {"step": step, "params": _to_host(final), "history": log.history,
          "preempted": preempted, "budget_reached": budget_reached}
