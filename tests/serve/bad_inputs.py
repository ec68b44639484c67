"""The bad-input corpus of `jaxtalk generate` (issue 14) and the inputs it is made of, shared by
every method's generate tests (tests/serve/test_generate.py for posetalk,
tests/renderers/test_generate_gohd.py for gohd): each input fails cleanly (exit status 2, the
file named, no output left)."""

import pathlib
import wave

import numpy as np

from jaxtalk.serve import generate
from tests import media


def _short_wav(shared_data, tmp_path, seconds=1.3, rate=22050, channels=2):
  """A stereo 22.05 kHz excerpt of real speech (generate must resample and downmix)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  wav = audio_lib.load_audio(str(shared_data / "audio" / "eng.wav"))[16000:16000 + int(
      seconds * 16000)]
  x = np.interp(np.arange(int(seconds * rate)) / rate, np.arange(len(wav)) / 16000, wav)
  pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
  path = tmp_path / "speech.wav"
  with wave.open(str(path), "wb") as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(np.repeat(pcm[:, None], channels, 1).tobytes())
  return path


def _speech(shared_data, seconds, start=3.0):
  """float32 16 kHz mono real speech (eng.wav from `start` s: its first 3 s are near-silent)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  wav = audio_lib.load_audio(str(shared_data / "audio" / "eng.wav"))
  return wav[int(start * 16000):int((start + seconds) * 16000)]


def _resample(x, rate):
  return np.interp(np.arange(int(round(len(x) / 16000 * rate))) / rate,
                   np.arange(len(x)) / 16000, x).astype(np.float32)


def _bars(n, size=96):
  """Frames without a face: moving coloured bars."""
  out = []
  for k in range(n):
    img = np.zeros([size, size, 3], np.uint8)
    img[:, (4 * k) % size:(4 * k) % size + 12] = (200, 50, 50)
    img[(3 * k) % size:(3 * k) % size + 8] = (50, 200, 50)
    out.append(img)
  return out


def _write_wav(path, x, rate=16000, subtype="PCM_16", fmt="WAV"):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  sf.write(str(path), x, rate, subtype=subtype, format=fmt)
  return str(path)


def _portrait_canvas(shared_data, size, face_side, path, **save):
  """HDTF_0.jpg scaled to `face_side` px on a grey canvas of `size` (W, H)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  src = Image.open(shared_data / "images" / "HDTF_0.jpg").convert("RGB")
  canvas = Image.new("RGB", size, (90, 90, 90))
  canvas.paste(src.resize((face_side, face_side)), ((size[0] - face_side) // 3,
                                                    (size[1] - face_side) // 2))
  canvas.save(path, **save)
  return str(path)


BAD_INPUTS = [
    # portrait
    "no_face", "tiny_face", "missing_image", "empty_image", "text_as_jpg", "truncated_jpg",
    "tiny_image",
    # speech
    "empty_audio", "silent_audio", "near_silent_audio", "short_audio", "not_audio",
    "text_as_wav", "wav_header_only", "garbage_mp3", "video_without_audio",
    # --pose-from
    "pose_from_image", "pose_from_image_renamed", "pose_from_no_face", "pose_from_audio_only",
    "pose_from_missing",
    # model and options
    "missing_model", "bad_gaze", "bad_template", "no_pose_model", "out_not_mp4"]


def assert_rejected(case, model_dir, shared_data, tmp_path, capsys, extra_args=()):
  """Bad input `case` (of BAD_INPUTS) given to `jaxtalk generate --model model_dir
  [extra_args]`: exit status 2, the file named in the message, no output file left."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = str(shared_data / "images" / "musk.png")
  audio = str(_short_wav(shared_data, tmp_path, seconds=0.6))
  model = str(model_dir)
  extra = ["--pose-template", "nod"]
  out = tmp_path / "out.mp4"
  named, match = None, None
  if case == "no_face":
    image = str(tmp_path / "noface.png")
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(image)
    named, match = image, "no face found"
  elif case == "tiny_face":  # a 24 px face in a 640x480 frame: too small for any landmarks
    image = _portrait_canvas(shared_data, (640, 480), 24, tmp_path / "crowd.png")
    named, match = image, "no face found"
  elif case == "missing_image":
    image = str(tmp_path / "nope.jpg")
    named, match = image, "not found"
  elif case == "empty_image":
    image = str(tmp_path / "empty.jpg")
    open(image, "wb").close()
    named, match = image, "empty"
  elif case == "text_as_jpg":
    image = str(tmp_path / "notes.jpg")
    pathlib.Path(image).write_text("not a photo\n" * 50)
    named, match = image, "not a readable image"
  elif case == "truncated_jpg":
    image = str(tmp_path / "half.jpg")
    data = (shared_data / "images" / "HDTF_0.jpg").read_bytes()
    pathlib.Path(image).write_bytes(data[:len(data) // 2])
    named, match = image, "truncated"
  elif case == "tiny_image":
    image = str(tmp_path / "thumb.png")
    Image.open(shared_data / "images" / "HDTF_0.jpg").resize((24, 24)).save(image)
    named, match = image, "need >= 32x32"
  elif case == "empty_audio":
    audio = str(tmp_path / "empty.wav")
    open(audio, "wb").close()
    named, match = audio, "empty"
  elif case in ("silent_audio", "near_silent_audio", "short_audio"):
    audio = str(tmp_path / f"{case}.wav")
    n = 16000 if case != "short_audio" else 1000
    x = {"silent_audio": np.zeros(n),  # digital silence
         "near_silent_audio": 3e-5 * np.random.RandomState(0).randn(n),  # -90 dBFS hiss
         "short_audio": 0.25 * np.sin(np.arange(n) * 0.1)}[case]  # 0.06 s
    _write_wav(audio, x)
    named, match = audio, "silent" if case != "short_audio" else "need at least"
  elif case == "not_audio":
    audio = image  # a PNG is not speech
    named, match = audio, "has no audio stream"
  elif case == "text_as_wav":
    audio = str(tmp_path / "notes.wav")
    pathlib.Path(audio).write_text("meeting notes, not a recording\n" * 20)
    named, match = audio, "cannot open as audio"
  elif case == "wav_header_only":  # a recording that was cut off before any sample
    audio = str(tmp_path / "cut.wav")
    _write_wav(audio, np.zeros(1600))
    pathlib.Path(audio).write_bytes(pathlib.Path(audio).read_bytes()[:44])
    named, match = audio, "no samples"
  elif case == "garbage_mp3":
    audio = str(tmp_path / "noise.mp3")
    pathlib.Path(audio).write_bytes(np.random.RandomState(0).bytes(4000))
    named, match = audio, "audio"
  elif case == "video_without_audio":
    audio = str(media.write_mp4(tmp_path / "mute.mp4", media.face_frames(shared_data, 25, 0.8), 25))
    named, match = audio, "has no audio stream"
  elif case.startswith("pose_from"):
    ref = {"pose_from_image": str(shared_data / "images" / "HDTF_0.jpg"),
           "pose_from_image_renamed": str(tmp_path / "clip.mp4"),
           "pose_from_no_face": str(tmp_path / "bars.mp4"),
           "pose_from_audio_only": str(tmp_path / "voice.wav"),
           "pose_from_missing": str(tmp_path / "missing.mp4")}[case]
    if case == "pose_from_image_renamed":
      pathlib.Path(ref).write_bytes((shared_data / "images" / "HDTF_0.jpg").read_bytes())
    elif case == "pose_from_no_face":
      media.write_mp4(ref, _bars(25), 25)
    elif case == "pose_from_audio_only":
      _write_wav(ref, _speech(shared_data, 1.0))
    extra = ["--pose-from", ref]
    named, match = ref, {"pose_from_image": "is an image",
                         "pose_from_image_renamed": "is an image",
                         "pose_from_no_face": "a face was found in only 0%",
                         "pose_from_audio_only": "has no video stream",
                         "pose_from_missing": "not found"}[case]
  elif case == "missing_model":
    model = str(tmp_path / "no_model")
    named = model
  elif case == "bad_gaze":
    extra += ["--gaze", "up"]
    named = "--gaze"
  elif case == "bad_template":
    extra = ["--pose-template", "moonwalk"]
    named = "moonwalk"
  elif case == "no_pose_model":
    extra = ["--text", "he nods"]
    named = "pld"
  elif case == "out_not_mp4":
    out = tmp_path / "out.avi"
    named, match = str(out), "must be an .mp4"
  before = set(tmp_path.iterdir())
  code = generate.run(["jaxtalk generate", "--image", image, "--audio", audio, "--model", model,
                       "--out", str(out), "--quiet", *extra_args, *extra])
  err = capsys.readouterr().err
  assert code == 2, err[-2000:]
  assert "jaxtalk generate: error:" in err and "Traceback" not in err
  assert named in err, err[-2000:]
  if match:
    assert match in err, err[-2000:]
  assert "is an image" not in err or "--pose-template" in err  # the way out is named
  assert not out.exists()
  assert set(tmp_path.iterdir()) == before  # no output, no temporary file left
