"""Pictures and videos in and out: opening, saving and converting pictures, and rewriting a
video frame by frame (its frame rate, size and audio kept). What is done to the pixels is
the caller's (stylize.py)."""

import contextlib
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from . import atomic
from .errors import UserError
from .paths import regular_file

PICTURE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    return "picture"


def picture_tensor(image: Image.Image) -> torch.Tensor:
    """A picture as the networks take it: float (1, 3, H, W) RGB in 0..255."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None].float()


def open_picture(path, name=None) -> Image.Image:
    """A picture file, or a picture's bytes (`name` then says what they are in messages),
    refused in one line where it is none."""
    name = name or path
    try:
        image = Image.open(io.BytesIO(path) if isinstance(path, bytes) else regular_file(path))
        image.load()
        return image
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{name}: not a readable picture ({e})") from None


def style_name(path) -> str:
    """A style's name in a model: its picture's file name without the extension."""
    return Path(path).stem


def style_record(path) -> dict:
    """{"name", "sha256"} of a style picture, as a model file records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": style_name(path), "sha256": digest.hexdigest()}


def save_picture(image: Image.Image, dest, quality: int = 95):
    """`image` to `dest`, atomically, in the format its suffix names (`quality`: JPEG's)."""
    dest = Path(dest)
    if dest.suffix.lower() in (".jpg", ".jpeg") and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha channel
    try:
        with atomic.atomic_path(dest) as tmp:
            image.save(tmp, format=Image.registered_extensions().get(dest.suffix.lower()), quality=quality)
    except (KeyError, ValueError) as e:
        raise UserError(f"{dest}: cannot write this picture format ({e})") from None


def claim_picture_output(out, inputs, flag: str = "-o", inputs_are: str = "the photo"):
    """`out` may receive a picture made from `inputs`: its format is known, it is none of the
    inputs, and it is absent or a picture's file (replaced as cp does); else one line."""
    if Path(out).suffix.lower() not in Image.registered_extensions():
        raise UserError(f"{flag} {out}: unknown picture format (use .png or .jpg)")
    if any(Path(out).resolve() == Path(p).resolve() for p in inputs):
        raise UserError(f"{flag} {out}: that is {inputs_are} itself; refusing to overwrite the input "
                        f"(choose another {flag})")
    atomic.claim_file(out, lambda _: True, "a picture", hint=f"choose another {flag}")


def fitted(draw, text: str, font, width: int) -> str:
    """`text`, cut short with an ellipsis where it is wider than `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def video_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """The output's size: the input's, or within --max-size as pictures are (aspect kept)."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def video_encoding(dest, width: int, height: int) -> tuple[str, str]:
    """(codec, pixel format) for a video of this size. H.264 in 4:2:0 (what every player
    plays) needs even sizes; rather than lose a row or column, an odd size is encoded 4:4:4,
    which keeps every pixel but which some players (browsers, QuickTime) do not play. VP9
    (.webm) keeps odd sizes in 4:2:0."""
    if Path(dest).suffix.lower() == ".webm":
        return "libvpx-vp9", "yuv420p"
    return "libx264", "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def map_video(src, dest, frames_fn, max_size: int | None = None, batch_size: int = 4):
    """Write the video `src` to `dest` with its frames (uint8 HxWx3, in order) passed through
    `frames_fn`, a list of up to `batch_size` at a time -> as many frames, keeping the frame
    rate and the size (or within `max_size`) and copying the audio track untouched."""
    import av

    with _open_video(src) as source:
        if not source.streams.video:
            raise UserError(f"{src}: has no video stream")
        vin = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        vin.thread_type = "AUTO"
        with atomic.atomic_path(dest) as tmp, av.open(str(tmp), "w", format=_container(dest)) as sink:
            vout = _video_stream(sink, vin, dest, max_size)
            aout, recode = _audio_stream(sink, audio, dest)
            total = vin.frames or (int(source.duration * float(vin.average_rate) / 1e6)
                                   if source.duration and vin.average_rate else None)
            pending = []  # (pts, frame) waiting to go through frames_fn in one batch

            def flush():
                if not pending:
                    return
                for (pts, _), out in zip(pending, frames_fn([f for _, f in pending])):
                    frame = av.VideoFrame.from_ndarray(out, format="rgb24").reformat(format=vout.pix_fmt)
                    frame.pts, frame.time_base = pts, vin.time_base
                    for packet in vout.encode(frame):
                        sink.mux(packet)
                progress.update(len(pending))
                pending.clear()

            streams = [vin] + ([audio] if audio is not None else [])
            with tqdm(total=total, desc=Path(src).name, unit="frame") as progress, _video_errors(src):
                for packet in source.demux(*streams):
                    if packet.stream is audio:
                        _copy_audio(packet, aout, sink, recode)
                        continue
                    for frame in packet.decode():
                        rgb = frame.reformat(vout.width, vout.height, "rgb24", interpolation="AREA")
                        pending.append((frame.pts, rgb.to_ndarray()))
                        if len(pending) >= batch_size:
                            flush()
                flush()
            for stream in [vout] + ([aout] if recode else []):
                for packet in stream.encode():
                    sink.mux(packet)


# The audio codecs each container holds as they are; any other is re-encoded into the first.
AUDIO_CODECS = {".webm": ("libopus", "opus", "vorbis"), ".mp4": ("aac", "mp3", "alac", "ac3"),
                ".m4v": ("aac", "mp3", "alac", "ac3"), ".mov": ("aac", "mp3", "alac", "ac3", "pcm_s16le"),
                ".avi": ("libmp3lame", "mp3", "ac3", "pcm_s16le")}


def _audio_stream(sink, audio, dest):
    """(the output's audio stream, whether it is re-encoded): the input's track copied as it
    is where the container holds its codec (.mkv holds any), else re-encoded into one it does."""
    if audio is None:
        return None, False
    codecs = AUDIO_CODECS.get(Path(dest).suffix.lower())
    if codecs is None or audio.codec_context.name in codecs:
        return sink.add_stream_from_template(audio), False
    rate = 48000 if codecs[0] == "libopus" else audio.codec_context.sample_rate or 48000  # Opus: 48 kHz
    out = sink.add_stream(codecs[0], rate=rate)
    out.layout = audio.codec_context.layout.name if audio.codec_context.layout else "stereo"
    names = {"libopus": "Opus", "aac": "AAC", "libmp3lame": "MP3"}
    tqdm.write(f"note: {Path(dest).suffix} cannot hold {audio.codec_context.name} audio; re-encoding it as "
               f"{names[codecs[0]]}", file=sys.stderr)
    return out, True


def _copy_audio(packet, aout, sink, recode: bool):
    if not recode:
        if packet.dts is not None:
            packet.stream = aout
            sink.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None  # the encoder counts samples from the track's start
        for out in aout.encode(frame):
            sink.mux(out)


def _open_video(src):
    import av

    try:
        return av.open(str(regular_file(src)))
    except (av.error.FFmpegError, OSError) as e:
        raise UserError(f"{src}: not a readable video ({e})") from None


def _video_stream(sink, vin, dest, max_size):
    """The output's video stream: the input's frame rate and time base, its size or within
    `max_size`, in the codec and pixel format that size plays in (video_encoding)."""
    width, height = video_size(vin.codec_context.width, vin.codec_context.height, max_size)
    codec, pix_fmt = video_encoding(dest, width, height)
    if pix_fmt == "yuv444p":
        tqdm.write(f"note: {dest} is {width}x{height}, an odd size, so it is encoded as 4:4:4 H.264 to keep "
                   "every pixel; some players (browsers, QuickTime) cannot play that: "
                   f"-o {Path(dest).with_suffix('.webm').name} keeps the size and plays everywhere",
                   file=sys.stderr)
    vout = sink.add_stream(codec, rate=vin.average_rate or 30)
    vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
    vout.time_base = vin.time_base
    return vout


@contextlib.contextmanager
def _video_errors(src):
    """A damaged video: one clear line, and (atomic writes) no half-written output."""
    import av

    try:
        yield
    except av.error.FFmpegError as e:
        raise UserError(f"{src}: cannot decode the video ({e})") from None


def _container(dest) -> str | None:
    return {".mkv": "matroska", ".m4v": "mp4"}.get(Path(dest).suffix.lower())
