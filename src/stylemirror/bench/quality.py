"""`stylemirror bench quality`: train on real photos with real VGG19 weights, then score a
photo the run never saw, beside a plain reference trained in the same run on the same data,
steps, loss and weights: pytorch/examples' fast_neural_style network (reflection padding,
nearest-neighbour upsampling + 3x3 conv, conv biases, an unbounded output) in eager fp32."""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import arbitrary, data, formats, loss_network, paintings, registry
from ..arguments import positive_int
from ..images import open_picture, picture_tensor
from ..metrics import grid_score, shifted_grid_score, style_distance, wall_edge_score
from .common import DISTANCE_LABELS, SHARED, write_skimage_photos

QUALITY_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
ZOOM = 4  # the grid's period is 2-4 pixels: shown 4x, nearest-neighbour, it is plain to see


def style_score(net, vgg, photo: Image.Image, style: Image.Image):
    """(Gram distance(stylized, style) / Gram distance(photo, style) over the style layers,
    content drift: relative squared change of the relu3_1 features, the stylized photo).
    Score < 1: the stylized photo is closer to the style than the photo was."""
    x, s = picture_tensor(photo), picture_tensor(style)
    with torch.no_grad():
        y = net(x).clamp(0, 255)
        fx, fy, fs = vgg(x), vgg(y), vgg(s)

        def distance(f):
            return sum(((loss_network.gram(f[k]) - loss_network.gram(fs[k])) ** 2).mean().item() for k in QUALITY_LAYERS)
        drift = ((fy["relu3_1"] - fx["relu3_1"]) ** 2).sum() / (fx["relu3_1"] ** 2).sum()
    return distance(fy) / distance(fx), drift.item(), as_picture(y)


def as_picture(y: torch.Tensor) -> Image.Image:
    """A network's output [1, 3, H, W] in 0..255 as a picture, clamped and rounded as saved."""
    return Image.fromarray(y[0].clamp(0, 255).permute(1, 2, 0).round().byte().numpy())


def stylized_by(net, photo: Image.Image) -> Image.Image:
    with torch.no_grad():
        return as_picture(net(picture_tensor(photo)))


def arbitrary_picture(painting: Image.Image, photo: Image.Image, net=None) -> Image.Image:
    """`photo` in the style of `painting` by the arbitrary-style network (`net`: a loaded
    arbitrary.ArbitraryNet to reuse), as `stylemirror stylize --style-image` paints it."""
    net = net or arbitrary.ArbitraryNet.pretrained()
    return stylized_by(net.with_style(paintings.picture_vector(painting)), photo)


def style_distances(photo: Image.Image, painting_path, stylized: dict, arbitrary_net=None) -> dict:
    """metrics.style_distance to the painting (lower: closer) of the photo itself (the
    ceiling), of each of `stylized` ({name: picture of the photo}) and of the arbitrary-style
    network's picture of it, which its own predictor scores (the two were trained together)."""
    painting = open_picture(painting_path).convert("RGB")
    pictures = {"photo": photo, **stylized, "arbitrary": arbitrary_picture(painting, photo, arbitrary_net)}
    return {name: style_distance(picture, painting, arbitrary.predictor()) for name, picture in pictures.items()}


def raw_frames(net, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The network itself, eager and clamped and rounded as a saved picture is, on uint8
    HxWx3 frames of one size: what the scores read (Stylizer runs ONNX Runtime, with options)."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        y = net(x).clamp(0, 255).round().byte()
    return list(y.permute(0, 2, 3, 1).numpy())


# --- The plain reference: pytorch/examples' fast_neural_style TransformerNet -------------------

class ReferenceConv(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, upsample=False):
        super().__init__(*([nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []),
                         nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ReferenceResidual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(ReferenceConv(c, c, 3), nn.InstanceNorm2d(c, affine=True), nn.ReLU(),
                                  ReferenceConv(c, c, 3), nn.InstanceNorm2d(c, affine=True))

    def forward(self, x):
        return x + self.body(x)


class ReferenceNet(nn.Sequential):
    def __init__(self):
        def block(cin, cout, kernel, stride=1, upsample=False):
            return [ReferenceConv(cin, cout, kernel, stride, upsample), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()]
        super().__init__(*block(3, 32, 9), *block(32, 64, 3, 2), *block(64, 128, 3, 2),
                         *(ReferenceResidual(128) for _ in range(5)),
                         *block(128, 64, 3, upsample=True), *block(64, 32, 3, upsample=True), ReferenceConv(32, 3, 9))


def train_reference(photos: Path, criterion, steps, image_size, batch_size, learning_rate, seed, max_zoom):
    """pytorch/examples' loop: eager fp32 Adam on random crops of the same pictures."""
    torch.manual_seed(seed)
    net = ReferenceNet()
    optimizer = torch.optim.Adam(net.parameters(), learning_rate)
    files = data.find_images(photos)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        picks = rng.choice(len(files), batch_size, replace=len(files) < batch_size)
        windows = data.random_windows(rng, batch_size, max_zoom)
        x = torch.from_numpy(np.stack([data.load_crop(files[i], image_size, w) for i, w in zip(picks, windows)]))
        x = x.permute(0, 3, 1, 2).float()
        losses = criterion(net(x), x)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
    return net.eval()


def flicker_of(net) -> dict:
    """bench flicker's figures for a trained network (still, pan, zoom, overall)."""
    from ..stylize import Stylizer
    from .flicker import bench_flicker

    if isinstance(net, ReferenceNet):  # not a TransformNet: run it plainly, clamped as it is saved
        class Plain:
            def frames(self, frames):
                return raw_frames(net, frames)
        return bench_flicker({"net": Plain()})["net"]
    return bench_flicker({"net": Stylizer(net)})["net"]


def zoomed(picture: Image.Image, box) -> Image.Image:
    crop = picture.crop(box)
    return crop.resize((crop.width * ZOOM, crop.height * ZOOM), Image.Resampling.NEAREST)


def trained(style, photos: Path, vgg_path, folder: Path, steps, **recipe):
    """(network, seconds, log rows, config) of `stylemirror train`'s own loop on `photos` for
    `steps`, with the VGG19 layers at hand (QUALITY_LAYERS) and `recipe`'s fields; its files in
    `folder`."""
    from ..train import TrainConfig, train

    cfg = TrainConfig(style=style, checkpoint_dir=str(folder / "ckpt"), train_path=str(photos), vgg_path=str(vgg_path),
                      model_dir=str(folder / "model"), epochs=10**6, checkpoint_iterations=10**9,
                      style_layers=QUALITY_LAYERS, content_layer="relu3_1", max_steps=steps,
                      log_interval=max(1, steps // 10), **recipe)
    start = time.perf_counter()
    status = train(cfg)
    if status:  # a signal stopped it: its checkpoint is in a temporary folder, so nothing resumes
        print("bench quality: stopped before its training finished; nothing was written", file=sys.stderr, flush=True)
        raise SystemExit(status)
    seconds = time.perf_counter() - start
    log = [json.loads(line) for line in (folder / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    return registry.open_model(folder / "model" / "model.safetensors"), seconds, log, cfg


def quality(style_path, photo_path, vgg_path, out_dir, steps=300, image_size=128, batch_size=4,
            style_weight=4000.0, learning_rate=1e-3, style_size=256, workers=None, arch="standard",
            decoder="resize", encoder="blur", crop_zoom=2.0, reference=True, published=None,
            stability_weight=0.0, grid_weight=loss_network.GRID_WEIGHT, seed=42, steadiness=True):
    """Train on scikit-image's photos with real VGG19 weights (ours through `stylemirror
    train`'s own loop, then the plain reference), score a photo neither run saw, and write
    pictures into out_dir: photo | ours | reference, and zoomed crops of ours beside
    `published` (an ml5 model of the same style, e.g. ml5's udnie) to show the grid.
    `seed` sets both runs' initialisation, crops and steadiness shifts: a 300-step run's
    grid score swings with it (bench/README.md), so compare recipes over several.
    `steadiness=False` leaves out the flicker clips and the edge scores (half a minute on a
    CPU), for tests that do not look at them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_skimage_photos(tmp / "photos")
        net, seconds, log, cfg = trained(
            str(style_path), photos, vgg_path, tmp, steps, batch_size=batch_size, style_weight=style_weight,
            learning_rate=learning_rate, image_size=image_size, style_size=style_size, workers=workers, arch=arch,
            decoder=decoder, encoder=encoder, crop_zoom=crop_zoom, seed=seed, stability_weight=stability_weight,
            grid_weight=grid_weight)
        vgg = loss_network.load_vgg(vgg_path, QUALITY_LAYERS)
        style = Image.open(style_path).convert("RGB")
        style.thumbnail((style_size, style_size))
        ref_net = ref_seconds = None
        if reference:
            criterion = loss_network.PerceptualLoss(vgg, picture_tensor(style), "relu3_1", QUALITY_LAYERS,
                                                    cfg.content_weight, style_weight, cfg.tv_weight)
            start = time.perf_counter()
            ref_net = train_reference(photos, criterion, steps, image_size, batch_size, learning_rate, seed, crop_zoom)
            ref_seconds = time.perf_counter() - start
    photo = Image.open(photo_path).convert("RGB")
    photo.thumbnail((256, 256))
    score, drift, stylized = style_score(net, vgg, photo, style)
    name = file_name(arch, decoder, encoder, stability_weight, grid_weight)
    formats.save_safetensors(net, out_dir / f"{name}.safetensors", {"steps": steps, "style": Path(style_path).name})
    result = {"style_score": score, "content_drift": drift, "grid": grid_score(stylized), "photo_grid": grid_score(photo),
              "grid_shifted": shifted_grid_score(lambda pixels: raw_frames(net, [pixels])[0], photo),
              "photo_grid_shifted": shifted_grid_score(lambda pixels: pixels, photo),
              "arch": arch, "decoder": decoder, "encoder": encoder, "steps": steps, "image_size": image_size, "batch_size": batch_size,
              "style_weight": style_weight, "crop_zoom": crop_zoom, "stability_weight": stability_weight,
              "grid_weight": grid_weight,
              "seed": seed, "train_seconds": seconds,
              "first_loss": log[0]["total"], "last_loss": log[-1]["total"]}
    if steadiness:
        result.update(flicker=flicker_of(net), edges=wall_edge_score(net), edges_unpadded=wall_edge_score(net, 0))
    pictures = {"ours": stylized}
    if ref_net is not None:
        pictures["reference"] = score_reference(ref_net, vgg, photo, style, result, ref_seconds, steadiness)
    rows_of_panels([photo, *pictures.values()]).save(out_dir / f"{name}.png")
    if published is not None:
        result["published_grid"], pictures["published"] = beside_published(published, photo, stylized,
                                                                            out_dir / f"{name}-zoom.png")
    result["style_distance"] = style_distances(photo, style_path, pictures)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


def file_name(arch, decoder, encoder, stability_weight, grid_weight) -> str:
    """quality, or what the recipe changed from the default: quality-lite-resize-blur-grid0 ..."""
    name = "quality" if (arch, decoder, encoder) == ("standard", "resize", "blur") else f"quality-{arch}-{decoder}-{encoder}"
    if stability_weight:  # train's default: off
        name += f"-stability{stability_weight:g}"
    if grid_weight != loss_network.GRID_WEIGHT:
        name += f"-grid{grid_weight:g}"
    return name


def score_reference(ref_net, vgg, photo, style, result: dict, seconds, steadiness) -> Image.Image:
    """The plain reference's figures into `result`, beside ours; returns its stylized photo."""
    score, drift, stylized = style_score(ref_net, vgg, photo, style)
    result.update(reference_style_score=score, reference_content_drift=drift,
                  reference_grid=grid_score(stylized), reference_train_seconds=seconds,
                  reference_grid_shifted=shifted_grid_score(lambda pixels: raw_frames(ref_net, [pixels])[0], photo),
                  style_score_ratio=result["style_score"] / score, content_drift_ratio=result["content_drift"] / drift)
    if steadiness:
        result["reference_flicker"] = flicker_of(ref_net)
    return stylized


def beside_published(published, photo: Image.Image, stylized: Image.Image, dest: Path):
    """(The grid score of `published` (an ml5 model) on the photo, its picture of the photo);
    writes a zoomed crop of its picture beside the same crop of `stylized` into dest."""
    published_picture = stylized_by(registry.open_model(published), photo)
    box = (photo.width // 2 - 32, photo.height // 2 - 32, photo.width // 2 + 32, photo.height // 2 + 32)
    pair = [zoomed(published_picture, box), zoomed(stylized, box)]
    zoom = Image.new("RGB", (pair[0].width * 2 + 8, pair[0].height), "white")
    zoom.paste(pair[0], (0, 0))
    zoom.paste(pair[1], (pair[0].width + 8, 0))
    zoom.save(dest)
    return grid_score(published_picture), published_picture


# --- Many styles in one network (conditional instance norm) -----------------------------------

# Four distinct styles available offline. Only one painting is at hand (udnie.jpg); ml5's
# published wave and la_muse models carry two more painters' styles, so a photo they render is
# a stand-in for those paintings; brick is scikit-image's texture, a regular pattern unlike any
# of them. (Crops or recolourings of udnie would be one style four times.)
DEFAULT_STYLES = ("udnie.jpg", "wave", "la_muse", "brick")
RENDERED_PHOTO = "astronaut"  # the scikit-image photo the ml5 models render into their styles
TEXTURES = ("brick", "grass", "gravel")  # scikit-image's textures


def style_picture(spec, folder: Path, shared: Path) -> Path:
    """A style picture as a file in `folder`, named after its style: a picture file as it is;
    the name of an ml5 model in shared/ml5-models: RENDERED_PHOTO through it; a texture of
    TEXTURES; a file name in shared/images."""
    import skimage.data

    from ..errors import UserError

    path, name = Path(spec), Path(spec).stem
    if not path.is_file() and (shared / "images" / spec).is_file():
        path = shared / "images" / spec
    if path.is_file():
        picture = open_picture(path).convert("RGB")
    elif (shared / "ml5-models" / spec / "manifest.json").is_file():
        photo = Image.fromarray(getattr(skimage.data, RENDERED_PHOTO)()).convert("RGB")
        photo.thumbnail((256, 256))
        picture = stylized_by(registry.open_model(shared / "ml5-models" / spec), photo)
    elif spec in TEXTURES:
        picture = Image.fromarray(getattr(skimage.data, spec)()).convert("RGB")
    else:
        raise UserError(f"--styles {spec}: not a picture, an ml5 model in {shared / 'ml5-models'}, "
                        f"nor a texture ({', '.join(TEXTURES)})")
    folder.mkdir(parents=True, exist_ok=True)
    picture.save(folder / f"{name}.png")
    return folder / f"{name}.png"


def rows_of_panels(*rows) -> Image.Image:
    """Rows of pictures of one size, left-aligned, on white."""
    w, h = rows[0][0].size
    grid = Image.new("RGB", (w * max(map(len, rows)), h * len(rows)), "white")
    for r, panels in enumerate(rows):
        for i, panel in enumerate(panels):
            grid.paste(panel, (i * w, r * h))
    return grid


def quality_styles(styles, photo_path, vgg_path, out_dir, shared: Path, steps=1200, image_size=128, batch_size=4,
                   style_weight=4000.0, learning_rate=1e-3, style_size=256, workers=None, arch="standard"):
    """One network for all `styles`, trained for len(styles) x `steps` (so each style gets
    `steps`, cycled), against a single-style network per style trained `steps` on the same
    data and loss: each style's score (style_score on a photo no run saw) and the ratio
    multi / single (target: 1.15 or less). Writes quality-styles.json and quality-styles.png
    (the photo, each style by the multi-style network, a blend of the first two; below, each
    single-style network's)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = [style_picture(s, out_dir / "styles", shared) for s in styles]
    names = [p.stem for p in pictures]
    if len(set(names)) != len(names) or len(names) < 2:
        from ..errors import UserError
        raise UserError(f"--styles: give two or more styles of different names (got {', '.join(names)})")
    vgg = loss_network.load_vgg(vgg_path, QUALITY_LAYERS)
    photo = Image.open(photo_path).convert("RGB")
    photo.thumbnail((256, 256))

    def run(style, tmp: Path, max_steps):
        net, seconds, _, _ = trained(style, tmp.parent / "photos", vgg_path, tmp, max_steps, batch_size=batch_size,
                                     style_weight=style_weight, learning_rate=learning_rate, image_size=image_size,
                                     style_size=style_size, workers=workers, arch=arch, seed=42)
        return net, seconds

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_skimage_photos(tmp / "photos")
        multi, multi_seconds = run([str(p) for p in pictures], tmp / "multi", len(pictures) * steps)
        singles = {name: run(str(p), tmp / name, steps) for name, p in zip(names, pictures)}
    style_images = {}
    for name, path in zip(names, pictures):
        style_images[name] = Image.open(path).convert("RGB")
        style_images[name].thumbnail((style_size, style_size))
    result = {"styles": {}, "steps": steps, "multi_steps": len(names) * steps, "image_size": image_size,
              "batch_size": batch_size, "style_weight": style_weight, "arch": arch,
              "multi_train_seconds": multi_seconds}
    top, bottom = [photo], [photo]
    arbitrary_net, paths = arbitrary.ArbitraryNet.pretrained(), dict(zip(names, pictures))
    for name, single in multi.each_style():
        score, drift, stylized = style_score(single, vgg, photo, style_images[name])
        single_score, single_drift, single_stylized = style_score(singles[name][0], vgg, photo, style_images[name])
        result["styles"][name] = {"style_score": score, "content_drift": drift, "single_style_score": single_score,
                                  "single_content_drift": single_drift, "single_train_seconds": singles[name][1],
                                  "ratio": score / single_score,
                                  "style_distance": style_distances(photo, paths[name], {"multi": stylized,
                                                                    "single": single_stylized}, arbitrary_net)}
        top.append(stylized)
        bottom.append(single_stylized)
    blend = torch.zeros(len(names))
    blend[:2] = 0.5
    top.append(style_score(multi.select(blend), vgg, photo, style_images[names[0]])[2])
    result["blend"] = {names[0]: 0.5, names[1]: 0.5}
    result["worst_ratio"] = max(s["ratio"] for s in result["styles"].values())
    rows_of_panels(top, bottom).save(out_dir / "quality-styles.png")
    formats.save_safetensors(multi, out_dir / "quality-styles.safetensors", {"steps": len(names) * steps})
    (out_dir / "quality-styles.json").write_text(json.dumps(result, indent=2))
    return result


# --- The command: `stylemirror bench quality [--styles ...]` ------------------------------------

HELP = ("training quality: style score, style distance, content drift, grid and flicker of a short run on real "
        "photos")


def add_arguments(p):
    from ..train import add_arguments as train_flags

    p.add_argument("--style", default=str(SHARED / "images" / "udnie.jpg"), help="style picture")
    p.add_argument("--styles", nargs="*", metavar="STYLE",
                   help="train one network for these styles (4x the steps for 4) against one network per style; "
                        "each a picture, an ml5 model in the shared folder (wave, la_muse: a photo it renders), or "
                        "a scikit-image texture (brick, grass, gravel), each kept as the picture used in OUT/styles/. "
                        f"Given alone: {' '.join(DEFAULT_STYLES)}")
    p.add_argument("--photo", default=str(SHARED / "images" / "amber.jpg"), help="held-out photo")
    p.add_argument("--vgg-path", default=str(SHARED / "vgg19" / "imagenet-vgg19-conv1_1-conv3_4.mat"),
                   help="VGG19 weights with conv1_1..conv3_1")
    p.add_argument("--out", default="bench/quality", help="where the figures and pictures go")
    p.add_argument("--steps", type=positive_int, default=1200, help="training steps (each style's, with --styles)")
    p.add_argument("--image-size", type=positive_int, default=128, help="training crop size")
    train_flags(p, only=("batch_size", "arch", "decoder", "encoder", "stability_weight", "grid_weight", "seed"))
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the plain reference in the same run")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="train this many seeds, from --seed on, each into OUT/seedN/, and report the spread of "
                        "the style figures (mean, min-max) in OUT/quality*-seeds.json")
    p.add_argument("--steadiness", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure flicker and a flat wall's edges (half a minute a network on a CPU)")


def run(args) -> dict:
    if args.styles is not None:
        return run_styles(args)
    seeds = [args.seed + i for i in range(args.seeds)]
    runs = [run_seed(args, seed, Path(args.out) / f"seed{seed}" if len(seeds) > 1 else Path(args.out)) for seed in seeds]
    print(f"style distance to the style picture (metrics.style_distance, lower is closer), seed{'s' * (len(seeds) > 1)} "
          f"{', '.join(map(str, seeds))}" + (": mean (min-max)" if len(seeds) > 1 else "") + ":")
    print_spread([r["style_distance"] for r in runs])
    if len(seeds) == 1:
        return runs[0]
    result = {"seeds": seeds, "spread": seed_spread(runs), "runs": runs}
    name = file_name(args.arch, args.decoder, args.encoder, args.stability_weight, args.grid_weight)
    summary = Path(args.out) / f"{name}-seeds.json"
    summary.write_text(json.dumps(result, indent=2))
    print(f"style score over the seeds {spread_text(result['spread']['style_score'])}"
          + (f", the reference's {spread_text(result['spread']['reference_style_score'])}" if args.reference else "")
          + f"; figures: {summary}")
    return result


SPREAD_FIGURES = ("style_score", "content_drift", "reference_style_score", "reference_content_drift")


def spread(values) -> dict:
    return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}


def spread_text(figure: dict) -> str:
    if figure["min"] == figure["max"]:
        return f"{figure['mean']:.2f}"
    return f"{figure['mean']:.2f} ({figure['min']:.2f}-{figure['max']:.2f})"


def seed_spread(runs: list[dict]) -> dict:
    """Mean, min and max over the runs of each of SPREAD_FIGURES they hold, and of each style distance."""
    result = {key: spread([r[key] for r in runs]) for key in SPREAD_FIGURES if key in runs[0]}
    result["style_distance"] = {name: spread([r["style_distance"][name] for r in runs]) for name in runs[0]["style_distance"]}
    return result


def print_spread(distances: list[dict], indent: str = "  "):
    """One line per picture of its style distance, over the runs' `distances`."""
    for name in distances[0]:
        print(f"{indent}{DISTANCE_LABELS[name]:52s} {spread_text(spread([d[name] for d in distances]))}")


def run_seed(args, seed, out: Path) -> dict:
    """One seed of `bench quality`: trains, scores and prints."""
    published = SHARED / "ml5-models" / "udnie"
    same_style = Path(args.style).stem == "udnie" and (published / "manifest.json").exists()
    result = quality(args.style, args.photo, args.vgg_path, out, steps=args.steps, image_size=args.image_size,
                     batch_size=args.batch_size, arch=args.arch, decoder=args.decoder, encoder=args.encoder,
                     reference=args.reference, published=published if same_style else None,
                     stability_weight=args.stability_weight, grid_weight=args.grid_weight, seed=seed,
                     steadiness=args.steadiness)
    print(f"style score {result['style_score']:.3f} (Gram distance to the style, stylized / photo; < 1 is better), "
          f"content drift {result['content_drift']:.3f}, grid {result['grid']:.2f} (the photo's own "
          f"{result['photo_grid']:.2f}), {result['steps']} steps in {result['train_seconds']:.0f} s, seed {seed}")
    print(f"grid over 4 positions of the photo {result['grid_shifted']:.2f} (the photo's own "
          f"{result['photo_grid_shifted']:.2f}; the grid's strength moves with where the photo falls modulo 4)")
    if args.steadiness:
        print(f"edges of a flat wall {result['edges']:.1f} levels from the rest (target <= 8; "
              f"{result['edges_unpadded']:.1f} with --edge-pad 0)")
    if "reference_style_score" in result:
        print(f"plain reference (pytorch/examples' network, eager fp32, same data, steps and loss): style score "
              f"{result['reference_style_score']:.3f}, content drift {result['reference_content_drift']:.3f}, grid "
              f"{result['reference_grid']:.2f} ({result['reference_grid_shifted']:.2f} over 4 positions), in "
              f"{result['reference_train_seconds']:.0f} s; ours / reference: style "
              f"{result['style_score_ratio']:.2f}x, drift {result['content_drift_ratio']:.2f}x")

    def steadiness(f):
        return f"overall {f['flicker']:.2f}, still {f['still']:.2f}, pan warping error {f['pan_warp']:.2f}"
    if args.steadiness:
        print("flicker (bench flicker's clips): " + steadiness(result["flicker"])
              + (f"; reference {steadiness(result['reference_flicker'])}" if args.reference else ""))
    if "published_grid" in result:
        print(f"ml5's published udnie on the same photo: grid {result['published_grid']:.2f}")
    print(f"pictures: {out}/quality*.png")
    return result


def run_styles(args) -> dict:
    """--styles: one network for all the styles against a network per style."""
    result = quality_styles(args.styles or DEFAULT_STYLES, args.photo, args.vgg_path, args.out, SHARED,
                            steps=args.steps, image_size=args.image_size, batch_size=args.batch_size, arch=args.arch)
    print(f"{len(result['styles'])} styles in one network ({result['multi_steps']} steps, "
          f"{result['multi_train_seconds']:.0f} s) against one network per style ({result['steps']} steps each); "
          "style score (< 1 is better), multi / single (target <= 1.15):")
    for name, r in result["styles"].items():
        print(f"  {name:12s} {r['style_score']:.3f} vs {r['single_style_score']:.3f}: {r['ratio']:.2f}x")
    print("style distance to each style picture (metrics.style_distance, lower is closer):")
    for name, r in result["styles"].items():
        print(f"  {name}:")
        print_spread([r["style_distance"]], indent="    ")
    print(f"pictures: {args.out}/quality-styles.png (top: the photo, each style, a blend of the first two; "
          "bottom: the single-style networks)")
    return result
