r"""python -m jaxtalk.main --config=configs/syncnet.py:size=tiny --workdir=/tmp/syncnet

The lip-sync expert (Wav2Lip's SyncNet, retrained on our data; PoseTalk supplementary A.3).

Args (`--config=configs/syncnet.py:<args>`):
  size=paper: Wav2Lip's expert: 96 px faces (48 x 96 lower halves), widths 32..512, D = 512,
    batch 64, Adam lr 1e-4; trained until the eval loss plateaus (~0.25 in Wav2Lip).
  size=tiny: 64 px crops (face box resized to 48 px: 24 x 48 lower halves), widths 8..64,
    D = 64, 1 residual block per stage, no normalisation layers, the motion input
    (motion_gain=4; see models/syncnet.py), BCE + the contrastive term (weight 1), 300 steps;
    for the 64 px shards of ../shared/data on a CPU.
  data_dir=DIR: preprocessed shards (`jaxtalk preprocess`).
  synthetic=true: synthetic batches (smoke runs without shards).
"""

from configs import common

# Wav2Lip feeds tight face-detector boxes; jaxtalk's aligned crops are 1.6x the face, so the
# expert looks at the central face box of the crop (syncnet.ALIGNED_FACE_BOX).
FACE_BOX = (0.1875, 0.1875, 0.8125, 0.8125)

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="")
  c = common.base_config()
  c.task = "jaxtalk.tasks.syncnet"
  c.input.keys = ("frames", "mel", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  # Clips preprocessing could not re-synchronise (|av_offset - audio_shift| > 2 frames) would
  # give the expert out-of-sync positives: leave them out (input_pipeline.out_of_sync_clips).
  # The filter acts on estimates of confidence >= 2.5, below the 3.0 preprocessing needs to shift
  # audio: shifting a clip on a wrong estimate breaks it, while leaving one out only costs data,
  # and late positives teach the expert the wrong offset (HDTF KatieHill measures +6 at 2.8).
  # Unrelated signals reach 2.5 in up to ~11% of clips (data_pipelines/av_sync.py); estimates
  # below it are unknown and keep their clip.
  c.input.max_av_offset = 2
  c.input.av_min_confidence = 2.5
  # contrastive: jaxtalk's optional InfoNCE term over in-clip audio offsets (weight 0 = Wav2Lip's
  # BCE only; the tiny config turns it on); augment: optional appearance/loudness augmentation
  # (see tasks/syncnet.py).
  c.syncnet = dict(windows_per_clip=4, min_shift=5, augment={},
                   contrastive=dict(weight=0.0, max_offset=8, min_offset=3, temperature=0.1))
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.optax.clip_grad_norm = 0.0

  if args.size == "paper":
    c.model = dict(image_size=96, face_box=FACE_BOX,
                   face_widths=(32, 64, 128, 256, 512, 512), face_res=(0, 2, 3, 2, 2, 0),
                   audio_widths=(32, 64, 128, 256), audio_res=(2, 2, 2, 1), embed_dim=512,
                   norm="group")
    c.input.resolution = 256
    c.input.window = 20
    c.batch_size = 64
    c.syncnet.windows_per_clip = 1
    c.optax.lr = 1e-4
    c.total_steps = 200_000
    c.eval_every = 2000
    c.log_every = 100
    c.checkpoint_every = 2000
  elif args.size == "tiny":
    c.model = dict(image_size=48, face_box=FACE_BOX,
                   face_widths=(8, 16, 32, 64, 64, 64), face_res=(0, 1, 1, 1, 1, 0),
                   audio_widths=(8, 16, 32, 64), audio_res=(1, 1, 1, 1), embed_dim=64,
                   norm="none", motion_gain=4.0)
    c.input.resolution = 64
    c.input.window = 20
    c.batch_size = 16
    c.syncnet.windows_per_clip = 2
    c.syncnet.contrastive.weight = 1.0
    c.optax.lr = 1e-3
    # motion_gain=4 leaves the BCE plateau early; past ~300 steps the expert memorises the few
    # clips (benchmarks/results/tuning_notes.md; tests/tasks/test_syncnet.py).
    c.total_steps = 300
    c.eval_every = 200
    c.eval_batches = 2
    c.log_every = 50
    c.checkpoint_every = 600
  else:
    raise ValueError(f"syncnet config: size={args.size!r}; expected paper or tiny")
  return c
