"""Test media: odd videos and talking-face frames made on the fly (tests/serve/test_generate.py and
tests/data_pipelines/test_preprocess.py feed them to `jaxtalk generate` and preprocessing)."""

import numpy as np


def write_mp4(path, frames, fps, audio=None, audio_rate=16000, layout="mono", codec="libx264",
               fmt=None):
  """Writes uint8 RGB `frames` at `fps` (any rate; none = audio only) with an optional AAC track
  (`audio`: float32 [N] or [N, C] at `audio_rate`, channel `layout`), in container `fmt`
  (default: from the suffix). Returns `path`."""
  import av  # pylint: disable=g-import-not-at-top
  import fractions  # pylint: disable=g-import-not-at-top
  frames = list(frames)
  with av.open(str(path), "w", format=fmt) as out:
    vs = aus = None
    if frames:
      vs = out.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
      vs.height, vs.width = frames[0].shape[:2]
      vs.pix_fmt = "yuv420p"
    if audio is not None:
      aus = out.add_stream("aac", rate=audio_rate, layout=layout)
    for f in frames:
      for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
        out.mux(p)
    if vs is not None:
      for p in vs.encode():
        out.mux(p)
    if aus is not None:
      a = np.asarray(audio, np.float32).reshape(len(audio), -1)
      for i in range(0, len(a), 1024):
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[i:i + 1024].T), format="fltp",
                                        layout=layout)
        fr.sample_rate, fr.pts = audio_rate, i
        for p in aus.encode(fr):
          out.mux(p)
      for p in aus.encode():
        out.mux(p)
  return path


def face_frames(shared_data, fps, seconds, size=160, canvas=None, face_side=None):
  """vox2_00086's talking face at `fps` (resampled by time), `size` px; with `canvas` (W, H)
  the face, scaled to `face_side` px, sits on a grey frame of that size."""
  import av  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  src = []
  with av.open(str(shared_data / "videos" / "vox2_00086.mp4")) as c:
    for fr in c.decode(video=0):
      img = fr.to_ndarray(format="rgb24")
      if canvas is None:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
      else:
        frame = np.full((canvas[1], canvas[0], 3), 90, np.uint8)
        x0, y0 = (canvas[0] - face_side) // 3, (canvas[1] - face_side) // 2
        frame[y0:y0 + face_side, x0:x0 + face_side] = cv2.resize(img, (face_side, face_side))
        img = frame
      src.append(img)
      if len(src) >= seconds * 25 + 1:
        break
  return [src[min(int(k * 25 / fps), len(src) - 1)] for k in range(int(round(seconds * fps)))]
