"""`stylemirror bench flicker`: how much a model shimmers from frame to frame.

A feed-forward style network restyles every frame on its own, so small changes of the input
(sensor noise, a slow movement) can become large changes of the texture it paints. Three
clips made from real photos (scikit-image's, no download), each CLIP_FRAMES frames:
- still: one picture under fresh sensor-like noise every frame (a person sitting still);
- pan: a window sliding one pixel a frame across a photo, with light noise;
- zoom: a window narrowing 0.4% a frame, with light noise.
Flicker is the change of the stylized frames against the change of the input frames: for the
pan and the zoom, mean |stylized frame - previous| / mean |input frame - previous|; for the
still camera, the temporal standard deviation of the output over that of the input (mean
over pixels). 1 means the output moves as much as the input. Overall: the mean of the three.
The pan's flicker also counts texture that moves with the picture, as it should: a model
stylizing one wide picture once, each frame a crop of it, scores higher than ours frame by
frame (0.82 vs 0.70). So the pan is also scored as a warping error, `pan_warp` (see there):
the shimmer alone; and each model's figures with its texture glued to the scene (`glued`,
see glued_scores), what a perfectly consistent model of that texture would get: the pan and
the zoom cannot tell shimmer apart from a texture's own contrast. `--steady` also measures
each model with its input steadied (stylize.Steadier), as videos and the mirror's camera run
it.
ml5's published la_muse, wave and udnie score 1.48, 1.19 and 0.76 overall (bench/README.md)."""

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..stylize import Steadier
from .common import SHARED

CLIP_FRAMES = 60
FRAME_SIZE = (256, 192)  # width, height: small enough for a CPU, large enough for texture
STILL_NOISE = 3.0  # levels: a webcam's sensor noise in good light
MOTION_NOISE = 1.0


def _photo(name: str) -> Image.Image:
    try:
        import skimage.data
    except ImportError:
        raise UserError("bench flicker needs scikit-image (pip install scikit-image): its photos make the clips") from None
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def _noisy(frame: np.ndarray, sigma: float, rng) -> np.ndarray:
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).round().astype(np.uint8)


def _sources(frames: int, size) -> tuple[Image.Image, Image.Image, Image.Image]:
    """The clips' noise-free sources: the still picture at the frame size, the wide picture the
    pan slides across (scaled so that `frames` one-pixel steps fit in it), and the zoom's scene."""
    w, h = size
    still = _photo("astronaut").resize(size, Image.Resampling.LANCZOS)
    wide = _photo("coffee")
    wide = wide.resize((w + frames, round((w + frames) * wide.height / wide.width)), Image.Resampling.LANCZOS)
    return still, wide, _photo("chelsea")


def _pan(wide: Image.Image, size, frames: int) -> list[np.ndarray]:
    w, h = size
    top = (wide.height - h) // 2
    return [np.asarray(wide.crop((i, top, i + w, top + h)), dtype=np.float64) for i in range(frames)]


def _zoom_windows(scene_size, size, frames: int) -> list[tuple]:
    """The zoom's window in each frame, in the scene's pixels: 0.4% narrower a frame, centred."""
    (sw, sh), (w, h) = scene_size, size
    windows = []
    for i in range(frames):
        side_w = min(sw, sh * w / h) * 0.996 ** i
        side_h = side_w * h / w
        left, upper = (sw - side_w) / 2, (sh - side_h) / 2
        windows.append((left, upper, left + side_w, upper + side_h))
    return windows


def _zoom(scene: Image.Image, windows, size, scale: float = 1.0) -> list[np.ndarray]:
    return [np.asarray(scene.resize(size, Image.Resampling.BILINEAR, box=tuple(v * scale for v in box)), dtype=np.float64)
            for box in windows]


def clips(frames: int = CLIP_FRAMES, size=FRAME_SIZE, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """{"still", "pan", "zoom"}: lists of uint8 HxWx3 frames."""
    rng = np.random.default_rng(seed)
    still, wide, scene = _sources(frames, size)
    still = np.asarray(still, dtype=np.float64)
    zoom = _zoom(scene, _zoom_windows(scene.size, size, frames), size)
    return {"still": [_noisy(still, STILL_NOISE, rng) for _ in range(frames)],
            "pan": [_noisy(f, MOTION_NOISE, rng) for f in _pan(wide, size, frames)],
            "zoom": [_noisy(f, MOTION_NOISE, rng) for f in zoom]}


def glued_clips(stylizer, frames: int = CLIP_FRAMES, size=FRAME_SIZE) -> dict[str, list[np.ndarray]]:
    """The pan and the zoom as a perfectly consistent model would paint them, its texture glued
    to the scene: the noise-free wide picture and scene stylized once (the scene at the
    scale of the zoom's first frame, so the texture is the size the clip's frames get), and each
    frame cut from them as the clip cuts its input."""
    _, wide, scene = _sources(frames, size)
    windows = _zoom_windows(scene.size, size, frames)
    scale = size[0] / (windows[0][2] - windows[0][0])
    scene = scene.resize((round(scene.width * scale), round(scene.height * scale)), Image.Resampling.LANCZOS)
    wide, scene = (Image.fromarray(stylizer.frames([np.asarray(p)])[0]) for p in (wide, scene))
    return {"pan": _pan(wide, size, frames), "zoom": _zoom(scene, windows, size, scale)}


def flicker(inputs: list[np.ndarray], outputs: list[np.ndarray], still: bool) -> float:
    """The output's frame-to-frame change over the input's (see the module's docstring)."""
    x = np.stack(inputs).astype(np.float64)
    y = np.stack(outputs).astype(np.float64)
    if still:
        return float(y.std(axis=0).mean() / x.std(axis=0).mean())
    return float(np.abs(np.diff(y, axis=0)).mean() / np.abs(np.diff(x, axis=0)).mean())


def pan_warp(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """The pan clip's warping error (Lai et al. 2018) with its flow known exactly: each frame
    against the frame before it moved by the pan's one pixel, mean |difference| of the output
    over that of the input (the input's is its noise alone). A model whose texture moves with
    the picture scores near 1, whatever its contrast; the pan flicker above cannot tell that
    from shimmer: a steady model of higher contrast than the photo scores higher there."""
    def moved_difference(frames):
        f = np.stack(frames).astype(np.float64)
        return np.abs(f[1:, :, :-1] - f[:-1, :, 1:]).mean()  # pixel x of frame t was x + 1 of t - 1
    return float(moved_difference(outputs) / moved_difference(inputs))


def through(stylizer, inputs: list[np.ndarray], steady: bool = False) -> list[np.ndarray]:
    """A clip through a stylizer, 8 frames a batch; `steady`: through a fresh Steadier first,
    as videos and the mirror's camera go."""
    if steady:
        steadier = Steadier()
        inputs = [steadier(f) for f in inputs]
    outputs = []
    for start in range(0, len(inputs), 8):
        outputs += stylizer.frames(inputs[start:start + 8])
    return outputs


def rows(stylizers: dict, steady: bool):
    """(model name, row name, stylizer, steadied) for each model, and with `steady` each again
    as "NAME +steady"."""
    for name, stylizer in stylizers.items():
        for steadied in (False, True) if steady else (False,):
            yield name, name + " +steady" * steadied, stylizer, steadied


def glued_scores(stylizer, made: dict, frames: int = CLIP_FRAMES, size=FRAME_SIZE) -> dict:
    """What this model would score with its texture glued to the scene (glued_clips): no
    shimmer, and nothing held still against the frame while the picture moves, which lowers
    the pan's and the zoom's flicker without being steadier (pan_warp counts it). Against the
    clips `made` as filmed; the still clip's is 0. {"pan", "zoom", "flicker"}, the last the
    mean of the three clips, as overall: the figure a perfectly consistent model of this
    texture would get, whatever training did to its shimmer."""
    glued = glued_clips(stylizer, frames, size)
    scores = {clip: flicker(made[clip], glued[clip], still=False) for clip in glued}
    scores["flicker"] = float((0.0 + scores["pan"] + scores["zoom"]) / 3)
    return scores


def bench_flicker(stylizers: dict, frames: int = CLIP_FRAMES, size=FRAME_SIZE, steady: bool = False) -> dict:
    """{model name: {"flicker", "still", "pan", "pan_warp", "zoom", "glued"}} for each Stylizer
    in `stylizers` (glued: glued_scores); `steady`: also each model with its input steadied
    (stylize.Steadier), as "NAME +steady", scored against the clip as filmed."""
    made = clips(frames, size)
    glued = {name: glued_scores(stylizer, made, frames, size) for name, stylizer in stylizers.items()}
    results = {}
    for name, row, stylizer, steadied in rows(stylizers, steady):
        scores = {}
        for clip, inputs in made.items():
            outputs = through(stylizer, inputs, steadied)
            scores[clip] = flicker(inputs, outputs, still=clip == "still")
            if clip == "pan":
                scores["pan_warp"] = pan_warp(inputs, outputs)
        scores["flicker"] = float(np.mean([scores[c] for c in made]))
        scores["glued"] = glued[name]
        results[row] = scores
    return results


def still_strip(stylizers: dict, dest, frames: int = 4, steady: bool = False):
    """A picture of the still clip through each model, one row each (the input first): its
    first `frames` frames and, last, the per-pixel temporal standard deviation over the whole
    clip (x16, as grey): where a still camera's picture shimmers. `steady`: each model also
    with its input steadied. Written atomically."""
    from PIL import ImageDraw

    from .. import atomic

    clip = clips()["still"]
    shown = {"input": clip}
    for _, row, stylizer, steadied in rows(stylizers, steady):
        shown[row] = through(stylizer, clip, steadied)
    w, h = FRAME_SIZE
    label = 18
    sheet = Image.new("RGB", ((frames + 1) * w, len(shown) * (h + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, row) in enumerate(shown.items()):
        top = r * (h + label)
        for c in range(frames):
            sheet.paste(Image.fromarray(row[c]), (c * w, top + label))
        spread = np.stack(row).astype(np.float64).std(axis=0).mean(axis=2)
        sheet.paste(Image.fromarray(np.clip(spread * 16, 0, 255).astype(np.uint8)).convert("RGB"), (frames * w, top + label))
        draw.text((4, top + 3), f"{name}: frames 1-{frames} of the still clip; last: temporal std x16 "
                  f"(mean {spread.mean():.1f} levels)", fill="black")
    with atomic.atomic_path(Path(dest)) as tmp:
        sheet.save(tmp, format="PNG")


HELP = "how much models shimmer from frame to frame, on clips made from real photos"


def add_arguments(p):
    p.add_argument("--model", action="append", help="a model, several times for several (default: ml5's published "
                                                    "ones in the shared folder); a multi-style model gives one row "
                                                    "per style")
    p.add_argument("--strip", help="also write a .png of the still clip through each model, with its temporal spread")
    p.add_argument("--steady", action="store_true",
                   help="also measure each model with its input steadied, as videos and the mirror's camera run it")


def run(args) -> dict:
    return models_flicker(args.model, args.strip, args.steady)


def models_flicker(models, strip=None, steady=False) -> dict:
    """Flicker of each model (default: ml5's published styles in the shared folder), reported;
    the figures of the first on the JSON's top level. `strip`: also a picture of the still clip
    through each model. `steady`: each model also with its input steadied (stylize.Steadier)."""
    from .. import registry, stylize

    if strip and Path(strip).suffix.lower() != ".png":
        raise UserError(f"--strip {strip}: the strip is a .png picture")
    if not models:
        models = [str(p) for p in sorted((SHARED / "ml5-models").glob("*")) if (p / "manifest.json").exists()]
        if not models:
            raise UserError("bench flicker: no models given (--model M, several times for several)")
    stylizers = {}
    for m in models:
        net = registry.open_model(m)
        for style, single in net.each_style():  # a multi-style model: each of its styles as a row of its own
            stylizers[f"{short_name(m, models)}:{style}" if net.styles > 1 else short_name(m, models)] = stylize.Stylizer(single)
    results = bench_flicker(stylizers, steady=steady)
    w, h = FRAME_SIZE
    print(f"flicker: stylized change / input change between frames, {CLIP_FRAMES}-frame clips at {w}x{h} "
          "(1: the output moves as much as the input; lower is steadier). Glued: what the same model scores with "
          "its texture glued to the scene, perfectly consistent (a pan or zoom below it has texture held still "
          "against the frame)")
    for name, r in results.items():
        g = r["glued"]
        print(f"  {name:32s} overall {r['flicker']:6.2f} (glued {g['flicker']:4.2f})   still {r['still']:6.2f}   "
              f"pan {r['pan']:6.2f} (glued {g['pan']:4.2f})   zoom {r['zoom']:6.2f} (glued {g['zoom']:4.2f})"
              f"   pan warping error {r['pan_warp']:6.2f}")
    if strip:
        still_strip(stylizers, strip, steady=steady)
        print(f"the still clip through each model: {strip}")
    return {**next(iter(results.values())), "models": results}


def short_name(model, models) -> str:
    """A model's file or folder name, with its folder's where two of `models` share one."""
    def name(m):
        return Path(m).stem if Path(m).suffix else Path(m).name
    twins = [o for o in models if name(o) == name(model)]
    return f"{Path(model).parent.name}/{name(model)}" if len(twins) > 1 else name(model)
