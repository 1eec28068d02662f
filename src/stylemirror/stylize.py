"""Stylize pictures, folders of pictures and videos with a TransformNet."""

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from . import atomic, tiling
from .errors import UserError

PICTURE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# BT.601 luma, as in JPEG's YCbCr: used to keep the original colours.
LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Options:
    max_size: int | None = None
    preserve_colors: bool = False
    strength: float = 1.0
    batch_size: int = 4
    # Pixels of reflected picture around the input, cropped off the output: the network's
    # zero-padded convolutions then paint their frame on the reflection, not on the picture
    # (0: off, as ml5.js runs). bench/README.md measures the sizes.
    edge_pad: int = 48
    # Bigger pictures and frames go through the network in tiles (tiling.py), with memory
    # bounded by the tile's size; untiled, the network holds about 0.4 GB a megapixel.
    max_pixels: int = 4_000_000
    # Videos: steady the frames' sensor noise before the network (Steadier).
    steady: bool = True


class Steadier:
    """Takes a camera's sensor noise out of a sequence of frames before the network sees them,
    so that a still scene stops shimmering (bench/README.md, `bench flicker --steady`).

    Each pixel follows a running average of its frames while it changes by no more than noise
    would (QUIET levels, the largest of its three channels), and the new frame itself from LOUD
    levels on: where something moves, nothing lags, so a moving hand leaves no trail. Between
    the two the share of the new frame rises from FOLLOW to 1. A pixel is never held further
    than LOUD levels from the camera's. web/stylenet.js's `steady` computes the same."""

    FOLLOW, QUIET, LOUD = 0.1, 8.0, 16.0  # chosen with bench flicker --steady (bench/README.md)

    def __init__(self):
        self.state = None  # float32 HxWx3: the steadied frame so far

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The next uint8 HxWx3 frame -> the steadied one (uint8); a frame of another size starts over."""
        x = frame.astype(np.float32)
        if self.state is None or self.state.shape != x.shape:
            self.state = x
        else:
            change = x - self.state
            loud = (np.abs(change).max(axis=2, keepdims=True) - self.QUIET) / (self.LOUD - self.QUIET)
            self.state += change * (self.FOLLOW + (1 - self.FOLLOW) * np.clip(loud, 0, 1))
        return self.state.round().astype(np.uint8)


class Stylizer:
    """Runs the network on uint8 HWC RGB frames and applies the user's options.

    On a CPU the network runs in ONNX Runtime, which is faster there than eager PyTorch
    (see `stylemirror bench stylize`) and agrees with it to a hundredth of a level;
    elsewhere, and for a network that is still training, in PyTorch."""

    def __init__(self, net, device="cpu", options: Options | None = None, engine="auto"):
        if net.styles > 1:
            pick_style(net, None)  # refused in one line that names the styles: select one first
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.options = options = options or Options()
        if not 0.0 <= options.strength <= 1.0:
            raise UserError(f"--strength must be between 0 and 1, got {options.strength}")
        if options.edge_pad < 0:
            raise UserError(f"--edge-pad must be 0 (off) or a number of pixels, got {options.edge_pad}")
        if engine == "auto":
            engine = "onnxruntime" if self.device.type == "cpu" else "torch"
        self.session = None
        # On a GPU, fp16 (tensor cores): within a level of fp32 on ml5's published models.
        self.half = engine == "torch" and self.device.type == "cuda"
        if engine == "onnxruntime":
            import onnxruntime

            from .formats import onnx_bytes
            self.session = onnxruntime.InferenceSession(onnx_bytes(self.net), providers=["CPUExecutionProvider"])

    def network(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is None:
            with torch.autocast(self.device.type, torch.float16, enabled=self.half):
                return self.net(x).float()
        return torch.from_numpy(self.session.run(None, {"image": x.numpy()})[0])

    def network_with_edges(self, x: torch.Tensor) -> torch.Tensor:
        """The network on x reflect-padded by Options.edge_pad, cropped back to x's size."""
        pad = self.options.edge_pad
        h, w = x.shape[-2:]
        if pad == 0:
            return self.network(x)  # as ml5.js runs it
        return self.network(reflect_pad(x, edge_padding(h, w, pad)))[..., pad:pad + h, pad:pad + w]

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's output y for input x (floats, N x 3 x H x W) -> uint8, with the
        user's options applied."""
        if self.options.preserve_colors:
            # Keep the original's chroma: add the stylized luma change to every channel.
            luma = LUMA.to(y).view(1, 3, 1, 1)
            y = x + ((y - x) * luma).sum(1, keepdim=True)
        if self.options.strength < 1.0:
            y = torch.lerp(x, y, self.options.strength)
        return y.round_().clamp_(0, 255).to(torch.uint8)  # in place: big pictures

    @torch.inference_mode()
    def frames(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Stylize equally sized frames (uint8 HxWx3) as one batch."""
        h, w = frames[0].shape[:2]
        pad = self.options.edge_pad
        if (h + 2 * pad) * (w + 2 * pad) > self.options.max_pixels:
            return [self.tiled(frame) for frame in frames]
        # One float copy, laid out as the network wants it (.float().contiguous() made two).
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).to(
            torch.float32, memory_format=torch.contiguous_format)
        return list(self.finish(x, self.network_with_edges(x)).permute(0, 2, 3, 1).cpu().numpy())

    def tiled(self, frame: np.ndarray) -> np.ndarray:
        """A frame too big for one pass, in tiles (tiling.py), the padding read tile by tile:
        the whole frame is held only as uint8, in and out, never as float."""
        with warnings.catch_warnings():  # a decoded picture is read-only; tiles are only read out of it
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None]
        out = torch.empty((1, *frame.shape), dtype=torch.uint8, device=self.device)
        tiling.stylize_tiled(self.net, x, min(self.options.max_pixels, tiling.TILE_PIXELS), self.options.edge_pad,
                             self.finish, out.permute(0, 3, 1, 2))
        return out[0].cpu().numpy()

    def prepare(self, image: Image.Image):
        """A PIL picture of any mode -> (uint8 RGB array, alpha channel or None), upright
        (EXIF orientation) and within --max-size."""
        image = ImageOps.exif_transpose(image)
        alpha = None
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            alpha = image.getchannel("A")
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit and float greys: Pillow's convert would clip them at 255.
            grey = np.asarray(image, dtype=np.float64)
            scale = 255 / 65535 if grey.max() > 255 else 1.0
            image = Image.fromarray(np.clip(grey * scale + 0.5, 0, 255).astype(np.uint8))
        image = image.convert("RGB")
        size = self.options.max_size
        if size and max(image.size) > size:
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            if alpha is not None:
                alpha = alpha.resize(image.size, Image.Resampling.LANCZOS)
        return np.asarray(image), alpha

    def pictures(self, images):
        """Stylize PIL pictures, batching neighbours of the same size; alpha is kept as is."""
        prepared = [self.prepare(image) for image in images]
        results = []
        start = 0
        while start < len(prepared):
            shape = prepared[start][0].shape
            end = start + 1
            while end < len(prepared) and end - start < self.options.batch_size and prepared[end][0].shape == shape:
                end += 1
            results += self.frames([rgb for rgb, _ in prepared[start:end]])
            start = end
        outs = []
        for rgb, (_, alpha) in zip(results, prepared):
            out = Image.fromarray(rgb)
            if alpha is not None:
                out.putalpha(alpha)
            outs.append(out)
        return outs

    def picture(self, image: Image.Image) -> Image.Image:
        return self.pictures([image])[0]


def style_weights(spec: str, names: list[str]) -> list[float]:
    """`--style` of a multi-style model: NAME, or a blend NAME:WEIGHT,NAME:WEIGHT,... (weights
    0 or more, normalised to sum 1) -> one weight per style in `names`' order."""
    styles = f"this model's styles: {', '.join(names)}"
    parts = [part.strip() for part in spec.split(",")]
    if len(parts) == 1 and ":" not in parts[0]:
        parts = [f"{parts[0]}:1"]
    weights = dict.fromkeys(names, 0.0)
    seen = set()
    for part in parts:
        name, colon, value = part.rpartition(":")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not colon or not name or not (weight >= 0 and weight != float("inf")):
            raise UserError(f"--style {spec}: expected NAME or NAME:WEIGHT,NAME:WEIGHT,... with weights of 0 or more "
                            f"({styles})")
        if name not in weights:
            raise UserError(f"--style {spec}: no style {name!r} ({styles})")
        if name in seen:
            raise UserError(f"--style {spec}: {name!r} given twice ({styles})")
        seen.add(name)
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"--style {spec}: the weights add up to 0; give one more than 0 ({styles})")
    return [w / total for w in weights.values()]


def pick_style(net, spec: str | None):
    """The single-style network that `--style` selects from a multi-style `net` (a convex
    combination of its styles' norm parameters: TransformNet.select); `net` itself when it
    holds one style and no --style is given."""
    from .formats import style_names

    if net.styles == 1:
        if spec is not None:
            raise UserError(f"--style {spec}: this model holds one style; --style picks among the styles of a "
                            "multi-style model (`stylemirror train --style a.jpg --style b.jpg ...`)")
        return net
    names = style_names(net)
    if spec is None:
        raise UserError(f"this model holds {len(names)} styles ({', '.join(names)}): pick one with --style NAME "
                        f"or blend them with --style {names[0]}:0.5,{names[1]}:0.5")
    return net.select(style_weights(spec, names)).eval()


def edge_padding(h: int, w: int, pad: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an h x w picture and Options.edge_pad `pad`: `pad` on
    every side, and up to 3 more at the bottom and right so that the padded size is a multiple
    of 4. At other sizes the two stride-2 convs' grid (TensorFlow's 'same' padding, as ml5.js
    runs it) starts 1-3 pixels off, and the whole output with it."""
    return pad, pad + -(h + 2 * pad) % 4, pad, pad + -(w + 2 * pad) % 4


def reflect_pad(x: torch.Tensor, pad) -> torch.Tensor:
    """(N, C, H, W) mirrored past every edge (the edge pixel not repeated) by `pad`: a number
    of pixels for every side, or (top, bottom, left, right). A reflection can add at most
    size - 1 pixels, so a picture smaller than the pad is reflected again and again (a
    mirrored tiling); a single row or column is repeated. web/stylenet.js pads the same way."""
    top, bottom, left, right = (pad,) * 4 if isinstance(pad, int) else pad
    for axis, (before, after) in ((-2, (top, bottom)), (-1, (left, right))):
        while before > 0 or after > 0:
            size = x.shape[axis]
            steps = [min(n, size - 1) or n for n in (before, after)]
            sides = (*steps, 0, 0) if axis == -1 else (0, 0, *steps)
            x = F.pad(x, sides, mode="reflect" if size > 1 else "replicate")
            before, after = before - steps[0], after - steps[1]
    return x


def wall_edge_score(net, edge_pad: int = Options.edge_pad, walls: int = 8) -> float:
    """metrics.edge_score of `walls` flat walls (metrics.flat_wall, 320x240, seeds 0, 1, ...)
    stylized by `net` with `edge_pad`: 8 levels or less is the target (issue 15)."""
    from .metrics import edge_score, flat_wall

    stylizer = Stylizer(net, "cpu", Options(edge_pad=edge_pad, batch_size=walls))
    return edge_score(stylizer.frames([flat_wall(seed=seed) for seed in range(walls)]))


def picture_tensor(image: Image.Image) -> torch.Tensor:
    """A picture as the networks take it: float (1, 3, H, W) RGB in 0..255."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None].float()


def open_picture(path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: not a readable picture ({e})") from None


def save_picture(image: Image.Image, dest):
    dest = Path(dest)
    if dest.suffix.lower() in (".jpg", ".jpeg") and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha channel
    try:
        with atomic.atomic_path(dest) as tmp:
            image.save(tmp, format=Image.registered_extensions().get(dest.suffix.lower()), quality=95)
    except (KeyError, ValueError) as e:
        raise UserError(f"{dest}: cannot write this picture format ({e})") from None


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


def stylize_video(stylizer: Stylizer, src, dest):
    """Stylize every frame, keeping the frame rate, the size (or --max-size) and copying the
    audio track untouched."""
    import av

    try:
        source = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise UserError(f"{src}: not a readable video ({e})") from None
    with source:
        if not source.streams.video:
            raise UserError(f"{src}: has no video stream")
        vin = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        vin.thread_type = "AUTO"
        with atomic.atomic_path(dest) as tmp, av.open(str(tmp), "w", format=_container(dest)) as sink:
            width, height = video_size(vin.codec_context.width, vin.codec_context.height, stylizer.options.max_size)
            codec, pix_fmt = video_encoding(dest, width, height)
            if pix_fmt == "yuv444p":
                tqdm.write(f"note: {dest} is {width}x{height}, an odd size, so it is encoded as 4:4:4 H.264 to keep "
                           "every pixel; some players (browsers, QuickTime) cannot play that: "
                           f"-o {Path(dest).with_suffix('.webm').name} keeps the size and plays everywhere",
                           file=sys.stderr)
            vout = sink.add_stream(codec, rate=vin.average_rate or 30)
            vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
            vout.time_base = vin.time_base
            aout = sink.add_stream_from_template(audio) if audio is not None else None
            total = vin.frames or (int(source.duration * float(vin.average_rate) / 1e6)
                                   if source.duration and vin.average_rate else None)
            pending = []  # (pts, frame) waiting to be stylized in one batch
            steady = Steadier() if stylizer.options.steady else (lambda frame: frame)

            def flush():
                if not pending:
                    return
                outs = stylizer.frames([f for _, f in pending])
                for (pts, _), out in zip(pending, outs):
                    frame = av.VideoFrame.from_ndarray(out, format="rgb24")
                    frame = frame.reformat(format=pix_fmt)
                    frame.pts, frame.time_base = pts, vin.time_base
                    for packet in vout.encode(frame):
                        sink.mux(packet)
                progress.update(len(pending))
                pending.clear()

            streams = [vin] + ([audio] if audio is not None else [])
            with tqdm(total=total, desc=Path(src).name, unit="frame") as progress, _video_errors(src):
                for packet in source.demux(*streams):
                    if packet.stream is audio:
                        if packet.dts is not None:
                            packet.stream = aout
                            sink.mux(packet)
                        continue
                    for frame in packet.decode():
                        rgb = frame.reformat(width, height, "rgb24", interpolation="AREA")
                        pending.append((frame.pts, steady(rgb.to_ndarray())))
                        if len(pending) >= stylizer.options.batch_size:
                            flush()
                flush()
            for packet in vout.encode():
                sink.mux(packet)


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


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    return "picture"


def _plan(inputs: list[Path], out: Path):
    """Pair every input file with its output path. A folder is mirrored into `out`; a single
    file goes to `out`, or into it where `out` is a folder (as `cp` does)."""
    if len(inputs) == 1 and kind_of(inputs[0]) != "folder":
        return [(inputs[0], out / inputs[0].name if out.is_dir() else out)]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: several inputs need -o to be a folder")
    pairs = []
    for src in inputs:
        if kind_of(src) == "folder":
            inside = out.resolve()
            if inside == src.resolve() or src.resolve() in inside.parents:
                raise UserError(f"-o {out} is inside the input folder {src}: a rerun would stylize the outputs "
                                "again and overwrite them; choose an output folder outside it")
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.suffix.lower() in PICTURE_EXTS | VIDEO_EXTS:
                    pairs.append((f, out / src.name / f.relative_to(src)))
        else:
            pairs.append((src, out / src.name))
    return pairs


def _check_outputs(pairs):
    """Every output is of its input's kind, replaces no input and no folder."""
    sources = {src.resolve() for src, _ in pairs}
    for src, dest in pairs:
        if dest.resolve() in sources:
            raise UserError(f"{dest}: refusing to overwrite the input")
        kind = kind_of(src)
        exts = VIDEO_EXTS if kind == "video" else PICTURE_EXTS
        if dest.suffix.lower() not in exts:
            raise UserError(f"{dest}: {src} is a {kind}, so the output must be a {kind} file too "
                            f"({', '.join(sorted(exts))})")
        atomic.claim_file(dest, {dest.suffix.lower()}, f"a {kind}", hint="choose another -o")


def run(stylizer: Stylizer, inputs, out, on_written=None):
    """Stylize every input; returns the outputs' paths. Of several inputs, an unreadable one
    stops nothing: the others are written (`on_written(dest)` as each is) and the unreadable
    ones are listed at the end, in one UserError."""
    inputs, out = [Path(p) for p in inputs], Path(out)
    for src in inputs:
        if not src.exists():
            raise UserError(f"{src}: no such file or folder")
    pairs = _plan(inputs, out)
    if not pairs:
        raise UserError(f"{', '.join(map(str, inputs))}: no pictures or videos found")
    _check_outputs(pairs)
    pictures = [(s, d) for s, d in pairs if kind_of(s) == "picture"]
    videos = [(s, d) for s, d in pairs if kind_of(s) == "video"]
    unreadable = []

    def readable(read):
        if len(pairs) == 1:
            return read()
        try:
            return read()
        except UserError as e:
            unreadable.append(str(e))
            return None

    def written(dest):
        if on_written is not None:
            on_written(dest)

    batch = stylizer.options.batch_size
    with tqdm(total=len(pictures), desc="pictures", unit="picture", disable=len(pictures) < 2) as progress:
        for start in range(0, len(pictures), batch):
            opened = [(readable(lambda: open_picture(src)), dest) for src, dest in pictures[start:start + batch]]
            opened = [(image, dest) for image, dest in opened if image is not None]
            for (_, dest), result in zip(opened, stylizer.pictures([image for image, _ in opened])):
                save_picture(result, dest)
                written(dest)
            progress.update(min(batch, len(pictures) - start))
    for src, dest in videos:
        if readable(lambda: stylize_video(stylizer, src, dest) or True):
            written(dest)
    if unreadable:
        raise UserError(f"{len(unreadable)} of {len(pairs)} inputs were not stylized (the other "
                        f"{len(pairs) - len(unreadable)} were written): {'; '.join(unreadable)}")
    return [d for _, d in pairs]
