"""Stylize pictures, folders of pictures and videos with a TransformNet: the engine
(Stylizer, with the user's Options and a video's Steadier), the choice of a multi-style
model's style (pick_style), and the run over the files a user names (run)."""

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from . import atomic, images, padding, tiling
from .errors import UserError

# BT.601 luma, as in JPEG's YCbCr: used to keep the original colours.
LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Options:
    max_size: int | None = None
    preserve_colors: bool = False
    strength: float = 1.0
    batch_size: int = 4
    edge_pad: int = padding.EDGE_PAD  # reflected picture around the input (padding.py; 0: off)
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
        # A painting's network takes --strength the paper's way: its vector moved towards each
        # picture's own (StyledNet.at_strength), not a fade of the output.
        self.vector_strength = net.arch == "arbitrary" and options.strength < 1.0
        self.scene = None  # one_scene: None, or [the network its first frame chose]
        if engine == "auto":
            # A network per picture (vector_strength) would need an ONNX graph per picture.
            engine = "onnxruntime" if self.device.type == "cpu" and not self.vector_strength else "torch"
        self.session = None
        # On a GPU, fp16 (tensor cores): within a level of fp32 on ml5's published models.
        self.half = engine == "torch" and self.device.type == "cuda"
        if engine == "onnxruntime":
            import onnxruntime

            from .formats import onnx_bytes
            self.session = onnxruntime.InferenceSession(onnx_bytes(self.net), providers=["CPUExecutionProvider"])

    def network(self, x: torch.Tensor, net=None) -> torch.Tensor:
        """`net` (default the Stylizer's own, which may run in ONNX Runtime) on x."""
        if self.session is None or (net is not None and net is not self.net):
            with torch.autocast(self.device.type, torch.float16, enabled=self.half):
                return (net or self.net)(x).float()
        return torch.from_numpy(self.session.run(None, {"image": x.numpy()})[0])

    def network_with_edges(self, x: torch.Tensor, net=None) -> torch.Tensor:
        """The network on x reflect-padded by Options.edge_pad, cropped back to x's size."""
        h, w = x.shape[-2:]
        pad = padding.bounded(self.options.edge_pad, h, w)
        if pad == 0:
            return self.network(x, net)  # as ml5.js runs it
        return self.network(padding.reflect_pad(x, padding.edge_padding(h, w, pad)), net)[..., pad:pad + h, pad:pad + w]

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's output y for input x (floats, N x 3 x H x W) -> uint8, with the
        user's options applied."""
        if self.options.preserve_colors:
            # Keep the original's chroma: add the stylized luma change to every channel.
            luma = LUMA.to(y).view(1, 3, 1, 1)
            y = x + ((y - x) * luma).sum(1, keepdim=True)
        if self.options.strength < 1.0 and not self.vector_strength:
            y = torch.lerp(x, y, self.options.strength)
        return y.round_().clamp_(0, 255).to(torch.uint8)  # in place: big pictures

    def net_for(self, frame: np.ndarray):
        """The network for one picture (uint8 HxWx3): the Stylizer's own, or at --strength
        for this picture (vector_strength); in one_scene, the first frame's for every frame."""
        if not self.vector_strength:
            return self.net
        if self.scene:
            return self.scene[0]
        net = self.net.at_strength(frame, self.options.strength)
        if self.scene is not None:
            self.scene.append(net)
        return net

    @contextlib.contextmanager
    def one_scene(self):
        """Frames of one video: a painting's network at --strength keeps the first frame's
        vector (the photo's style barely moves within a shot), so no frame changes style."""
        self.scene = []
        try:
            yield self
        finally:
            self.scene = None

    @torch.inference_mode()
    def frames(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Stylize equally sized frames (uint8 HxWx3) as one batch (one at a time where
        each picture has its own network: net_for)."""
        if self.vector_strength and self.scene is None and len(frames) > 1:
            return [out for frame in frames for out in self.frames([frame])]
        net = self.net_for(frames[0])
        h, w = frames[0].shape[:2]
        pad = padding.bounded(self.options.edge_pad, h, w)
        padded = (h + 2 * pad) * (w + 2 * pad)
        if padded > self.options.max_pixels:
            return [self.tiled(frame, net) for frame in frames]
        if len(frames) * padded > self.options.max_pixels:  # memory bounded as a tile's: batches of what fits
            fit = self.options.max_pixels // padded
            return [out for i in range(0, len(frames), fit) for out in self.frames(frames[i:i + fit])]
        # One float copy, laid out as the network wants it (.float().contiguous() made two).
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).to(
            torch.float32, memory_format=torch.contiguous_format)
        return list(self.finish(x, self.network_with_edges(x, net)).permute(0, 2, 3, 1).cpu().numpy())

    def tiled(self, frame: np.ndarray, net=None) -> np.ndarray:
        """A frame too big for one pass, in tiles (tiling.py), the padding read tile by tile:
        the whole frame is held only as uint8, in and out, never as float."""
        with warnings.catch_warnings():  # a decoded picture is read-only; tiles are only read out of it
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None]
        out = torch.empty((1, *frame.shape), dtype=torch.uint8, device=self.device)
        pad = padding.bounded(self.options.edge_pad, *frame.shape[:2])
        tiling.stylize_tiled(net or self.net, x, min(self.options.max_pixels, tiling.TILE_PIXELS), pad,
                             self.finish, out.permute(0, 3, 1, 2), show_progress=True)
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
            grey = np.nan_to_num(np.asarray(image, dtype=np.float64))
            top = grey.max(initial=0)
            # 16-bit greys span 0..65535; float pictures (TIFF) 0..1 mostly, else 0..255.
            scale = 255 / 65535 if top > 255 else 255.0 if image.mode == "F" and top <= 1.0 else 1.0
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
    if total == float("inf"):
        raise UserError(f"--style {spec}: the weights add up to more than a number can hold; use smaller ones "
                        f"({styles})")
    return [w / total for w in weights.values()]


def pick_style(net, spec: str | None):
    """The single-style network that `--style` selects from a multi-style `net` (a convex
    combination of its styles' norm parameters: TransformNet.select); `net` itself when it
    holds one style and no --style is given."""
    if net.styles == 1:
        if spec is not None:
            raise UserError(f"--style {spec}: this model holds one style; --style picks among the styles of a "
                            "multi-style model (`stylemirror train --style a.jpg --style b.jpg ...`)")
        return net
    names = net.style_names
    if spec is None:
        raise UserError(f"this model holds {len(names)} styles ({', '.join(names)}): pick one with --style NAME "
                        f"or blend them with --style {names[0]}:0.5,{names[1]}:0.5")
    return net.select(style_weights(spec, names)).eval()


def stylize_video(stylizer: Stylizer, src, dest):
    """Stylize every frame of a video (images.map_video: the frame rate, the size or
    --max-size, and the audio track kept), steadied first unless --no-steady."""
    steady = Steadier() if stylizer.options.steady else (lambda frame: frame)
    with stylizer.one_scene():
        images.map_video(src, dest, lambda frames: stylizer.frames([steady(f) for f in frames]),
                         stylizer.options.max_size, stylizer.options.batch_size)


def _plan(inputs: list[Path], out: Path):
    """Pair every input file with its output path. A folder is mirrored into `out`; a single
    file goes to `out`, or into it where `out` is a folder (as `cp` does). A plan in which two
    inputs would be written to one output is refused before anything is written."""
    if len(inputs) == 1 and images.kind_of(inputs[0]) != "folder":
        return [(inputs[0], out / inputs[0].name if out.is_dir() else out)]
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: several inputs need -o to be a folder")
    if not out.exists() and out.suffix.lower() in images.PICTURE_EXTS | images.VIDEO_EXTS:
        raise UserError(f"-o {out}: {'several inputs need' if len(inputs) > 1 else 'a folder needs'} -o to be a "
                        f"folder, and {out.name} is a file name; name a folder (it is made if missing)")
    pairs, folders = [], {}
    for src in inputs:
        if images.kind_of(src) == "folder":
            if folders.setdefault(src.name, src).resolve() != src.resolve():
                raise UserError(f"{folders[src.name]} and {src} would both be mirrored into {out / src.name}; "
                                "stylize them into separate -o folders")
            inside = out.resolve()
            if inside == src.resolve() or src.resolve() in inside.parents:
                raise UserError(f"-o {out} is inside the input folder {src}: a rerun would stylize the outputs "
                                "again and overwrite them; choose an output folder outside it")
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.suffix.lower() in images.PICTURE_EXTS | images.VIDEO_EXTS:
                    pairs.append((f, out / src.name / f.relative_to(src)))
        else:
            pairs.append((src, out / src.name))
    return _one_input_each(pairs)


def _one_input_each(pairs):
    """`pairs` with an input named twice kept once; refused where two inputs share an output."""
    by_output, kept = {}, []
    for src, dest in pairs:
        other = by_output.setdefault(dest.resolve(), src)
        if other is src:
            kept.append((src, dest))
        elif other.resolve() != src.resolve():
            raise UserError(f"{other} and {src} would both be written to {dest}; stylize them into "
                            "separate -o folders, or rename one")
    return kept


def _check_outputs(pairs):
    """Every output is of its input's kind, replaces no input and no folder."""
    sources = {src.resolve() for src, _ in pairs}
    for src, dest in pairs:
        if dest.resolve() in sources:
            raise UserError(f"{dest}: refusing to overwrite the input")
        kind = images.kind_of(src)
        exts = images.VIDEO_EXTS if kind == "video" else images.PICTURE_EXTS
        if dest.suffix.lower() not in exts:
            raise UserError(f"{dest}: {src} is a {kind}, so the output must be a {kind} file too "
                            f"({', '.join(sorted(exts))})")
        atomic.claim_file(dest, lambda _: True, f"a {kind}", hint="choose another -o")  # same extension: as cp does


def first_frame(src) -> Image.Image:
    """The picture in `src`; of an animated GIF or a multipage TIFF the first frame, said so."""
    image = images.open_picture(src)
    if getattr(image, "n_frames", 1) > 1:
        tqdm.write(f"note: {src} holds {image.n_frames} frames; only the first is stylized "
                   "(convert it to a video, e.g. .mp4, to stylize them all)", file=sys.stderr)
    return image


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
    pictures = [(s, d) for s, d in pairs if images.kind_of(s) == "picture"]
    videos = [(s, d) for s, d in pairs if images.kind_of(s) == "video"]
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
            opened = [(readable(lambda: first_frame(src)), dest) for src, dest in pictures[start:start + batch]]
            opened = [(image, dest) for image, dest in opened if image is not None]
            for (_, dest), result in zip(opened, stylizer.pictures([image for image, _ in opened])):
                images.save_picture(result, dest)
                written(dest)
            progress.update(min(batch, len(pictures) - start))
    for src, dest in videos:
        if readable(lambda: stylize_video(stylizer, src, dest) or True):
            written(dest)
    if unreadable:
        raise UserError(f"{len(unreadable)} of {len(pairs)} inputs were not stylized (the other "
                        f"{len(pairs) - len(unreadable)} were written): {'; '.join(unreadable)}")
    return [d for _, d in pairs]

