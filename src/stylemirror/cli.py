"""The `stylemirror` command."""

import argparse
import sys
from pathlib import Path

from . import __version__, loss_network
from .errors import UserError
from .network import ARCHITECTURES, DECODERS, ENCODERS
from .stylize import Options

# The shared folder beside a checkout holds real VGG19 weights and pictures for `bench quality`.
SHARED = Path(__file__).resolve().parents[3] / "shared"


def number(kind, accept, why):
    """An argparse type: text -> kind(text), kept where accept(value) holds, else `why`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value
    return parse


positive_int = number(int, lambda v: v > 0, "must be positive")
non_negative_int = number(int, lambda v: v >= 0, "must be 0 or more")
unit_float = number(float, lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1")
non_negative_float = number(float, lambda v: 0.0 <= v < float("inf"), "must be a finite number >= 0")
zoom_factor = number(float, lambda v: 1.0 <= v <= 8.0, "must be between 1 and 8")


def frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def cmd_stylize(args):
    from . import registry, stylize
    from .devices import pick_device

    net = stylize.pick_style(registry.open_model(args.model), args.style)
    options = stylize.Options(max_size=args.max_size, preserve_colors=args.preserve_colors,
                              strength=args.strength, batch_size=args.batch_size, edge_pad=args.edge_pad,
                              steady=args.steady)
    stylizer = stylize.Stylizer(net, pick_device(args.device), options)
    stylize.run(stylizer, args.inputs, args.output, on_written=print)


def cmd_export(args):
    from . import atomic, formats, registry

    if args.format == "ml5":
        atomic.claim_folder(args.output, formats.is_ml5_output, "an ml5 model", args.force)
    else:
        atomic.claim_file(args.output, {f".{args.format}"}, f"a .{args.format} file", args.force)
    net = registry.open_model(args.model)
    writer = {"ml5": formats.write_ml5, "onnx": formats.export_onnx,
              "safetensors": formats.save_safetensors}[args.format]
    writer(net, args.output)
    print(args.output)


def cmd_sheet(args):
    from . import mirror, sheet

    labels = sheet.make_sheet(args.photo, args.output, mirror.model_folders(args.models), args.tile_size)
    print(f"{args.output}: {len(labels) - 1} styles beside the original")


def cmd_models(args):
    from . import registry

    if args.action == "pull":
        for name in args.names or ["wave"]:
            print(registry.pull(name, force=args.force))
    else:
        have = set(registry.pulled())
        for name in registry.PUBLISHED:
            print(f"{name:16s} {'pulled' if name in have else '-'}")
        print(f"cache: {registry.cache_dir()}")


def cmd_train(args):
    from .train import TrainConfig, train

    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if len(config.style) == 1:
        config.style = config.style[0]  # one style: the single-style network, as ever
    status = train(config)
    if status:
        sys.exit(status)  # stopped by a signal: not finished, so a scheduler knows to run it again


def fetch_md5(name):
    from .fetch import SOURCES
    return SOURCES[name].md5


def loss_layers():
    from .loss_network import CONTENT_LAYER, STYLE_LAYERS
    return STYLE_LAYERS, CONTENT_LAYER


def layer_list(text: str) -> tuple:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def cmd_fetch(args):
    from . import fetch

    if args.what == "coco":
        if not args.dir:
            raise UserError("fetch coco needs a folder: stylemirror fetch coco DIR")
        pictures = fetch.fetch_coco(args.dir, keep_zip=args.keep_zip)
        print(f"COCO's training pictures are in {pictures}: stylemirror train --train-path {pictures} ...")
    else:
        weights = fetch.fetch_vgg19(args.dir)
        print(f"VGG19 weights: {weights}: stylemirror train --vgg-path {weights} ...")


def cmd_mirror(args):
    from . import mirror

    mirror.run(args.models, args.host, args.port, open_browser=not args.no_browser, watch=args.watch)


def cmd_bench(args):
    import json

    from . import bench

    if args.what == "quality" and args.styles is not None:
        result = bench_styles(args)
    elif args.what == "quality":
        published = SHARED / "ml5-models" / "udnie"
        same_style = Path(args.style).stem == "udnie" and (published / "manifest.json").exists()
        result = bench.quality(args.style, args.photo, args.vgg_path, args.out, steps=args.steps or 1200,
                               image_size=args.image_size or 128, batch_size=args.batch_size or 4, arch=args.arch,
                               decoder=args.decoder, encoder=args.encoder, reference=args.reference,
                               published=published if same_style else None, stability_weight=args.stability_weight,
                               grid_weight=args.grid_weight, seed=args.seed)
        print(f"style score {result['style_score']:.3f} (Gram distance to the style, stylized / photo; < 1 is better), "
              f"content drift {result['content_drift']:.3f}, grid {result['grid']:.2f} (the photo's own "
              f"{result['photo_grid']:.2f}), {result['steps']} steps in {result['train_seconds']:.0f} s, seed {args.seed}")
        print(f"grid over 4 positions of the photo {result['grid_shifted']:.2f} (the photo's own "
              f"{result['photo_grid_shifted']:.2f}; the grid's strength moves with where the photo falls modulo 4)")
        print(f"edges of a flat wall {result['edges']:.1f} levels from the rest (target <= 8; "
              f"{result['edges_unpadded']:.1f} with --edge-pad 0)")
        if "reference_style_score" in result:
            print(f"plain reference (pytorch/examples' network, eager fp32, same data, steps and loss): style score "
                  f"{result['reference_style_score']:.3f}, content drift {result['reference_content_drift']:.3f}, grid "
                  f"{result['reference_grid']:.2f} ({result['reference_grid_shifted']:.2f} over 4 positions), in {result['reference_train_seconds']:.0f} s; ours / reference: style "
                  f"{result['style_score_ratio']:.2f}x, drift {result['content_drift_ratio']:.2f}x")

        def steadiness(f):
            return f"overall {f['flicker']:.2f}, still {f['still']:.2f}, pan warping error {f['pan_warp']:.2f}"
        print("flicker (bench flicker's clips): " + steadiness(result["flicker"])
              + (f"; reference {steadiness(result['reference_flicker'])}" if args.reference else ""))
        if "published_grid" in result:
            print(f"ml5's published udnie on the same photo: grid {result['published_grid']:.2f}")
        print(f"pictures: {args.out}/quality*.png")
    elif args.what == "train":
        result = bench.bench_train(args.image_size or 256, args.batch_size or 4, args.steps or 3, args.device,
                                   compile_=args.compile, arch=args.arch, variants=args.variants)
        print(f"train step ({args.arch}{', compiled' if result['compiled'] else ''}): {result['images_per_s']:.3f} images/s; "
              f"plain eager fp32 reference "
              f"{result['reference_images_per_s']:.3f} images/s: {result['speedup']:.2f}x "
              f"({result['image_size']}px, batch {result['batch_size']}, {result['device']}, {result['machine']})")
        print(f"with train's default steadiness and grid terms: {result['default_images_per_s']:.3f} "
              f"images/s ({result['images_per_s'] / result['default_images_per_s']:.2f}x the time of a step without)")
        if "variants" in result:
            print(f"variants ({result['tflops_per_step']:.3f} TFLOP a step; x: against the reference):")
            for name, v in result.get("variants", {}).items():
                peak = f", {100 * v['share_of_peak']:.1f}% of the bf16 peak" if v["share_of_peak"] else ""
                print(f"  {name:16s} {v['images_per_s']:8.2f} images/s  {v['speedup']:5.2f}x  {v['tflops']:7.2f} TFLOP/s{peak}")
        if args.e2e:
            e2e = bench.bench_e2e(args.train_path, result["image_size"], result["batch_size"], args.steps or 3,
                                  args.device, compile_=args.compile, arch=args.arch)
            result["e2e"] = {**e2e, "ratio": e2e["images_per_s"] / result["images_per_s"]}
            print(f"end to end (`stylemirror train` on {args.train_path or 'generated 640x480 JPEGs'}): "
                  f"{e2e['images_per_s']:.3f} images/s, {100 * result['e2e']['ratio']:.0f}% of the step alone; "
                  f"two epochs of COCO train2014 at this rate: {e2e['coco_two_epochs_minutes']:.1f} minutes")
    elif args.what == "stylize":
        w, h = args.size or (640, 480)
        result = bench.bench_stylize(w, h, args.device, arch=args.arch)
        if result["tiled"]:
            print(f"stylize {result['size']} ({args.arch}), in tiles: {result['ms_per_frame'] / 1000:.1f} s, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB ({result['device']}, {result['machine']})")
        else:
            print(f"stylize {result['size']} ({args.arch}): {result['ms_per_frame']:.1f} ms/frame ({result['engine']}); "
                  f"plain eager fp32 reference {result['reference_ms_per_frame']:.1f} ms: {result['speedup']:.2f}x, "
                  f"max difference {result['max_level_difference']} level(s), peak RSS {result['peak_rss_mb']:.0f} MB "
                  f"({result['device']}, {result['machine']})")
            print(f"with the default --edge-pad {result['edge_pad']} (clean edges): {result['edge_pad_ms_per_frame']:.1f} "
                  f"ms/frame, {result['edge_pad_ms_per_frame'] / result['ms_per_frame']:.2f}x the time without")
    elif args.what == "mirror":
        w, h = args.size or (320, 240)
        model = args.model[0] if args.model else str(SHARED / "ml5-models" / "wave")
        result = bench.bench_mirror(model, w, h, frames=args.steps or 10)
        print(f"mirror page {result['size']}: {result['fps']:.3f} fps ({result['backend']}); ml5.js 0.12.2: "
              f"{result['ml5_fps']:.4f} fps ({result['ml5_backend']}): {result['speedup']:.1f}x; "
              f"lite network {result['lite_fps']:.2f} fps ({result['lite_vs_standard']:.1f}x the standard one; "
              f"ml5.js cannot run it) ({result['machine']}, headless Chromium)")
        print(f"without the steadier (?steady=off): {result['unsteady_fps']:.3f} fps, "
              f"{result['steady_cost']:.2f}x the page's default")
        print("the page with N mirrored pixels around each frame (?edgepad=N; the figure above: its default): " + ", ".join(
            f"{pad}: {fps:.3f} fps ({fps / result['ml5_fps']:.1f}x)" for pad, fps in result["edge_pad_fps"].items()))
    elif args.what == "flicker":
        result = bench_flicker(args.model, args.strip, args.steady)
    else:
        result = bench.bench_data(args.train_path, args.image_size or 256, args.batch_size or 4)
        print(f"data: {result['images_per_s']:.1f} images/s; naive decode+resize {result['reference_images_per_s']:.1f} "
              f"images/s: {result['speedup']:.2f}x ({result['pictures']} pictures, {result['machine']})")
    if args.json:
        print(json.dumps(result))


def bench_styles(args):
    """bench quality --styles: one network for all the styles against a network per style."""
    from .bench.quality import DEFAULT_STYLES, quality_styles

    result = quality_styles(args.styles or DEFAULT_STYLES, args.photo, args.vgg_path, args.out, SHARED,
                            steps=args.steps or 1200, image_size=args.image_size or 128,
                            batch_size=args.batch_size or 4, arch=args.arch)
    print(f"{len(result['styles'])} styles in one network ({result['multi_steps']} steps, "
          f"{result['multi_train_seconds']:.0f} s) against one network per style ({result['steps']} steps each); "
          "style score (< 1 is better), multi / single (target <= 1.15):")
    for name, r in result["styles"].items():
        print(f"  {name:12s} {r['style_score']:.3f} vs {r['single_style_score']:.3f}: {r['ratio']:.2f}x")
    print(f"pictures: {args.out}/quality-styles.png (top: the photo, each style, a blend of the first two; "
          "bottom: the single-style networks)")
    return result


def bench_flicker(models, strip=None, steady=False):
    """Flicker of each model (default: ml5's published styles in the shared folder); the
    figures of the first on the JSON's top level. `strip`: also a picture of the still clip
    through each model. `steady`: each model also with its input steadied (stylize.Steadier)."""
    from . import registry, stylize
    from .bench.flicker import CLIP_FRAMES, FRAME_SIZE, bench_flicker

    if strip and Path(strip).suffix.lower() != ".png":
        raise UserError(f"--strip {strip}: the strip is a .png picture")
    if not models:
        models = [str(p) for p in sorted((SHARED / "ml5-models").glob("*")) if (p / "manifest.json").exists()]
        if not models:
            raise UserError("bench flicker: no models given (--model M, several times for several)")
    def name(m):  # the file's or folder's name, with its folder's where two share one
        short = Path(m).stem if Path(m).suffix else Path(m).name
        twins = [o for o in models if (Path(o).stem if Path(o).suffix else Path(o).name) == short]
        return f"{Path(m).parent.name}/{short}" if len(twins) > 1 else short
    stylizers = {}
    for m in models:
        net = registry.open_model(m)
        for style, single in net.each_style():  # a multi-style model: each of its styles as a row of its own
            stylizers[f"{name(m)}:{style}" if net.styles > 1 else name(m)] = stylize.Stylizer(single)
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
        from .bench.flicker import still_strip
        still_strip(stylizers, strip, steady=steady)
        print(f"the still clip through each model: {strip}")
    return {**next(iter(results.values())), "models": results}


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not argparse's usage block: the same as every other error."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="stylemirror", description="Train, export and run fast neural style transfer.")
    parser.add_argument("--version", action="version", version=f"stylemirror {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    model_help = "an ml5 model folder, a .safetensors file, or a published style name (see `stylemirror models`)"

    p = sub.add_parser("stylize", help="stylize pictures, folders of pictures and videos")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="pictures, videos or folders")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--style", metavar="NAME|NAME:W,NAME:W",
                   help="a multi-style model's style by name, or a blend of its styles (weights are normalised "
                        "to sum 1), e.g. --style udnie:0.7,wave:0.3")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input; an existing folder: the output goes inside it) or folder "
                        "(outside the inputs). A file of the same kind and name is replaced, as cp does")
    p.add_argument("--max-size", type=positive_int, help="downscale so the longer side is at most N pixels")
    p.add_argument("--preserve-colors", action="store_true", help="keep the original colours, style only the luminance")
    p.add_argument("--strength", type=unit_float, default=1.0, help="0..1: blend with the original (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="frames per batch for folders and videos")
    p.add_argument("--edge-pad", type=non_negative_int, default=Options.edge_pad, metavar="PIXELS",
                   help=f"mirror the picture this far past its edges before stylizing, so no coloured frame "
                        f"is painted along them (default {Options.edge_pad}; 0: off, as ml5.js does)")
    p.add_argument("--steady", action=argparse.BooleanOptionalAction, default=Options.steady,
                   help="videos: take the sensor noise out of still parts before stylizing, so they do not "
                        "shimmer; moving parts pass untouched (default on)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("export", help="write a model in another format")
    p.add_argument("model", metavar="MODEL", help=model_help)
    p.add_argument("--format", required=True, choices=["ml5", "onnx", "safetensors"])
    p.add_argument("-o", "--output", required=True,
                   help="output folder (ml5) or file. An existing one is replaced only where it is a previous "
                        "export of the same format (an ml5 folder, a .onnx or .safetensors file); "
                        "anything else is refused, to keep your files")
    p.add_argument("--force", action="store_true", help="replace whatever is at -o (its files are deleted)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a style network (the flags of fast-style-transfer's style.py)")
    p.add_argument("--style", required=True, action="append",
                   help="the style picture; several (--style a.jpg --style b.jpg ...) train one network for all of "
                        "them (each its own instance-norm scale and shift, every conv shared), named by file name")
    p.add_argument("--checkpoint-dir", required=True, help="checkpoints, log and loss plot; reruns resume from here")
    p.add_argument("--train-path", default="data/train2014", help="folder of training pictures, searched recursively")
    p.add_argument("--vgg-path", help="VGG19 weights: MatConvNet .mat or torchvision state dict "
                                      "(default: torchvision's, downloaded once)")
    p.add_argument("--model-dir", help="where the final models go (default: CHECKPOINT_DIR/model)")
    p.add_argument("--test", help="a picture to stylize at every checkpoint")
    p.add_argument("--test-dir", help="where those previews go")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--checkpoint-iterations", type=positive_int, default=2000)
    p.add_argument("--content-weight", type=float, default=7.5)
    p.add_argument("--style-weight", type=float, default=100.0)
    p.add_argument("--tv-weight", type=float, default=200.0)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--image-size", type=positive_int, default=256, help="training crop size (default 256)")
    p.add_argument("--style-size", type=positive_int, help="downscale the style picture to at most N pixels")
    p.add_argument("--style-layers", type=layer_list, default=loss_layers()[0],
                   help="comma-separated VGG19 layers for the style loss (default relu1_1,...,relu5_1)")
    p.add_argument("--content-layer", default=loss_layers()[1], help="VGG19 layer for the content loss (default relu4_2)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default="standard",
                   help="standard (Johnson's; runs in ml5.js too) or lite (~4.8x fewer FLOPs, for weak devices)")
    p.add_argument("--decoder", choices=list(DECODERS), default="resize",
                   help="upsampling: resize (nearest 2x + 3x3 conv: no checkerboard grid; ml5.js runs it as a 4x4 "
                        "transposed conv) or deconv3 (ml5's published models' 3x3 transposed conv, which paints a grid)")
    p.add_argument("--encoder", choices=list(ENCODERS), default="blur",
                   help="downsampling: blur (3x3 conv blurred before keeping every other pixel: anti-aliased, less "
                        "content drift, steadier on moving pictures; ml5.js runs it as a 5x5 stride-2 conv; 1.1x the "
                        "time) or conv3 (ml5's published models' 3x3 stride-2 conv)")
    p.add_argument("--stability-weight", type=non_negative_float, default=loss_network.STABILITY_WEIGHT,
                   help="train against flicker: a slightly moved, noisier copy of a picture should stylize to the "
                        f"stylized picture, moved (default {loss_network.STABILITY_WEIGHT:g}; 0: off, one style-network "
                        "pass less per step; `stylemirror bench flicker`)")
    p.add_argument("--grid-weight", type=non_negative_float, default=loss_network.GRID_WEIGHT,
                   help="train against a grid: penalise what of each stylized picture repeats every 2 or 4 "
                        f"pixels, the pattern stride-2 layers paint (default {loss_network.GRID_WEIGHT:g}; 0: off; "
                        "`stylemirror bench quality` measures the grid)")
    p.add_argument("--crop-zoom", type=zoom_factor, default=2.0,
                   help="train on random square crops of 1/1 to 1/Z of each picture's shorter side (default 2; "
                        "1: the centre square only)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the step (default: on CUDA, and for runs of 500 steps or more)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="the loss network in bf16 (default: on CUDA and on CPUs with native bf16; "
                        "about 1.6x faster there, style score a little lower: bench/README.md)")
    p.add_argument("--workers", type=int, help="threads decoding training pictures (default: up to 8; 0: none)")
    p.add_argument("--max-steps", type=positive_int, help="stop after N steps")
    p.add_argument("--log-interval", type=positive_int, default=100, help="steps between log rows")
    p.add_argument("--mirror", action="store_true",
                   help="serve the mirror page beside the run (127.0.0.1:8000, or a free port) and open it: "
                        "your style as it learns, on your camera, with each new checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("mirror", help="the live webcam style mirror, in your browser")
    p.add_argument("--models", nargs="*", metavar="DIR", help="more folders with models (ml5 folders or training --model-dirs)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--watch", action="append", default=[], metavar="CHECKPOINT_DIR",
                   help="show a training run's network as it learns (going, finished, or synced from another "
                        "machine; one not started yet is waited for); several times for several runs")
    p.set_defaults(func=cmd_mirror)

    p = sub.add_parser("bench", help="measure speed (beside a plain reference) or training quality")
    p.add_argument("what", choices=["train", "stylize", "data", "quality", "mirror", "flicker"])
    p.add_argument("--model", action="append", help="mirror: an ml5 model folder (default ../shared/ml5-models/wave); "
                                                    "flicker: a model, several times for several (default: ml5's published ones); a multi-style "
                                                    "model gives one row per style")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default="standard", help="train/stylize/quality: the network")
    p.add_argument("--image-size", type=positive_int, help="train/data: crop size (256); quality: 128")
    p.add_argument("--batch-size", type=positive_int, help="default 4")
    p.add_argument("--steps", type=positive_int, help="train: timed steps (3); quality: training steps (1200)")
    p.add_argument("--size", type=frame_size, help="stylize: frame size WxH (640x480); mirror: 320x240")
    p.add_argument("--device", default="auto")
    p.add_argument("--train-path", help="data, train --e2e: a folder of pictures (default: generated 640x480 JPEGs)")
    p.add_argument("--style", default=str(SHARED / "images" / "udnie.jpg"), help="quality: style picture")
    p.add_argument("--styles", nargs="*", metavar="STYLE",
                   help="quality: train one network for these styles (4x the steps for 4) against one network per "
                        "style; each a picture, an ml5 model in the shared folder (wave, la_muse: a photo it renders), "
                        "or a scikit-image texture (brick, grass, gravel), each kept as the picture used in OUT/styles/. "
                        "Given alone: udnie.jpg wave la_muse brick")
    p.add_argument("--photo", default=str(SHARED / "images" / "amber.jpg"), help="quality: held-out photo")
    p.add_argument("--vgg-path", default=str(SHARED / "vgg19" / "imagenet-vgg19-conv1_1-conv3_4.mat"),
                   help="quality: VGG19 weights with conv1_1..conv3_1")
    p.add_argument("--out", default="bench/quality", help="quality: where the figures and picture go")
    p.add_argument("--decoder", choices=list(DECODERS), default="resize", help="quality: the network's upsampling")
    p.add_argument("--encoder", choices=list(ENCODERS), default="blur", help="quality: the network's downsampling")
    p.add_argument("--stability-weight", type=non_negative_float, default=loss_network.STABILITY_WEIGHT,
                   help="quality: train's --stability-weight (the same default)")
    p.add_argument("--grid-weight", type=non_negative_float, default=loss_network.GRID_WEIGHT,
                   help="quality: train's --grid-weight (the same default)")
    p.add_argument("--seed", type=int, default=42,
                   help="quality: the runs' seed (initialisation, crops); the grid score swings with it, so compare "
                        "recipes over several")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="quality: also train the plain reference in the same run (default on)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="train: torch.compile the step, as long runs do (default on)")
    p.add_argument("--variants", action="store_true",
                   help="train: also fp32 eager, + channels_last, + bf16, + compile, + CUDA graphs, with FLOP/s")
    p.add_argument("--e2e", action="store_true",
                   help="train: also the real `stylemirror train` loop on JPEG files, its images/s against the step's")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    p.add_argument("--strip", help="flicker: also write a .png of the still clip through each model, with its temporal spread")
    p.add_argument("--steady", action="store_true",
                   help="flicker: also measure each model with its input steadied, as videos and the mirror's camera run it")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("fetch", help="download COCO train2014 or MatConvNet's VGG19 (resumable, checked)",
                       description="Downloads resume where a cut-off run stopped (NAME.part) and are checked "
                                   "against the MD5 sums published beside the files (COCO train2014.zip "
                                   f"{fetch_md5('coco')}; imagenet-vgg-verydeep-19.mat, MatConvNet's beta16 file, "
                                   f"{fetch_md5('vgg19')}) before they take their name. "
                                   "STYLEMIRROR_FETCH_URL names a mirror folder holding the same file names.")
    p.add_argument("what", choices=["coco", "vgg19"])
    p.add_argument("dir", nargs="?", help="coco: where train2014/ goes (required); vgg19: default the user cache")
    p.add_argument("--keep-zip", action="store_true", help="coco: keep train2014.zip after unzipping it")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("sheet", help="one photo through every model the mirror lists, as a labelled grid picture")
    p.add_argument("photo", metavar="PHOTO")
    p.add_argument("-o", "--output", required=True, help="the sheet picture (.png, .jpg ...)")
    p.add_argument("--models", nargs="*", metavar="DIR",
                   help="more folders with models, as `stylemirror mirror --models` takes them")
    p.add_argument("--tile-size", type=positive_int, default=256, help="the longer side of each tile (default 256)")
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("models", help="list or pull ml5's published styles")
    p.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv=None):
    from .atomic import Terminated, removing_partial_writes_on_sigterm

    args = build_parser().parse_args(argv)
    try:
        with removing_partial_writes_on_sigterm():
            args.func(args)
    except UserError as e:
        print(f"stylemirror: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # the disk or the system said no: permissions, a full disk ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"stylemirror: error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("stylemirror: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated as e:
        print("stylemirror: stopped by SIGTERM; nothing half-written was left", file=sys.stderr)
        sys.exit(128 + e.args[0])


if __name__ == "__main__":
    main()
