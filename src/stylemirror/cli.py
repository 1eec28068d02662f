"""The `stylemirror` command: its flags, and each command handed to the module that does it."""

import argparse
import json
import sys

from . import __version__, train
from .arguments import non_negative_int, path_text, port_number, positive_int, unit_float
from .bench import arbitrary as arbitrary_bench, data as data_bench, flicker as flicker_bench, mirror as mirror_bench
from .bench import quality as quality_bench
from .bench import stylize as stylize_bench, train as train_bench
from .errors import UserError
from .stylize import Options

# Each benchmark's module: its flags (add_arguments), its report (run) and its help (HELP).
BENCHMARKS = {"train": train_bench, "stylize": stylize_bench, "data": data_bench, "quality": quality_bench,
              "arbitrary": arbitrary_bench, "mirror": mirror_bench, "flicker": flicker_bench}
MODEL_HELP = ("an ml5 model folder, a .safetensors or .pt file, a training's --model-dir, or a published style name "
              "(see `stylemirror models`)")


def cmd_stylize(args):
    from . import registry, stylize
    from .devices import pick_device

    if (args.model is None) == (args.style_image is None):
        raise UserError("stylize needs exactly one of --model MODEL and --style-image PAINTING")
    if args.style_image is not None:
        from .paintings import painting_net
        net = stylize.pick_style(painting_net(args.style_image), args.style)
    else:
        net = stylize.pick_style(registry.open_model(args.model), args.style)
    options = stylize.Options(max_size=args.max_size, preserve_colors=args.preserve_colors,
                              strength=args.strength, batch_size=args.batch_size, edge_pad=args.edge_pad,
                              steady=args.steady)
    stylizer = stylize.Stylizer(net, pick_device(args.device), options)
    stylize.run(stylizer, args.inputs, args.output, on_written=print)


def cmd_style(args):
    from .paintings import write_style_file

    print(write_style_file(args.painting, args.output))


def cmd_export(args):
    from . import formats, registry

    formats.claim_export(args.format, args.output, args.force)
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
    def serve_mirror():  # once the run has a network to show: the page opens on it
        from . import mirror
        mirror.start(watch=[args.checkpoint_dir], any_port=True,
                     note=f"it stops with this run; `stylemirror mirror --watch {args.checkpoint_dir}` serves it after")

    status = train.train(train.TrainConfig.from_args(args), on_ready=serve_mirror if args.mirror else None)
    if status:
        sys.exit(status)  # stopped by a signal: not finished, so a scheduler knows to run it again


def fetch_md5(name):
    from .fetch import SOURCES
    return SOURCES[name].md5


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


def mirror_host(args) -> str:
    """Where the mirror listens: this machine only, unless --lan (the network) or --host says."""
    return args.host or ("0.0.0.0" if args.lan else "127.0.0.1")


def cmd_mirror(args):
    from . import mirror

    mirror.run(args.models, mirror_host(args), args.port, open_browser=not args.no_browser, watch=args.watch, lan=args.lan,
               kiosk=args.kiosk)


def cmd_bench(args):
    result = args.bench(args)
    if args.json:
        print(json.dumps(result))


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not argparse's usage block: the same as every other error."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class ShowDefaults(argparse.HelpFormatter):
    """Each flag's default after its help, where it has one worth showing."""

    def _get_help_string(self, action):
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or "%(default)" in (action.help or ""):
            return action.help
        return f"{action.help} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="stylemirror", description="Train, export and run fast neural style transfer.")
    parser.add_argument("--version", action="version", version=f"stylemirror {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_stylize, add_style, add_export, add_train, add_mirror, add_bench, add_fetch, add_sheet, add_models):
        add(sub)
    return parser


def add_stylize(sub):
    p = sub.add_parser("stylize", help="stylize pictures, folders of pictures and videos")
    p.add_argument("inputs", nargs="+", type=path_text, metavar="INPUT", help="pictures, videos or folders")
    p.add_argument("--model", type=path_text, help=MODEL_HELP + "; or instead --style-image")
    p.add_argument("--style-image", metavar="PAINTING|PAINTING:W,PAINTING:W",
                   help="any painting as the style, no training (the arbitrary-style network; a blend of several "
                        "with weights, e.g. a.jpg:0.7,b.jpg:0.3); `stylemirror style` saves one as a model file")
    p.add_argument("--style", metavar="NAME|NAME:W,NAME:W",
                   help="a multi-style model's style by name, or a blend of its styles (weights are normalised "
                        "to sum 1), e.g. --style udnie:0.7,wave:0.3")
    p.add_argument("-o", "--output", required=True, type=path_text,
                   help="output file (one input; an existing folder: the output goes inside it) or folder "
                        "(outside the inputs). A file of the same kind and name is replaced, as cp does")
    p.add_argument("--max-size", type=positive_int, help="downscale so the longer side is at most N pixels")
    p.add_argument("--preserve-colors", action="store_true", help="keep the original colours, style only the luminance")
    p.add_argument("--strength", type=unit_float, default=1.0,
                   help="0..1: blend with the original (default 1); a painting's style (--style-image, "
                        "`stylemirror style`) moves its style towards the photo's own instead")
    p.add_argument("--batch-size", type=positive_int, default=4, help="frames per batch for folders and videos")
    p.add_argument("--edge-pad", type=non_negative_int, default=Options.edge_pad, metavar="PIXELS",
                   help=f"mirror the picture this far past its edges before stylizing, so no coloured frame "
                        f"is painted along them (default {Options.edge_pad}; 0: off, as ml5.js does)")
    p.add_argument("--steady", action=argparse.BooleanOptionalAction, default=Options.steady,
                   help="videos: take the sensor noise out of still parts before stylizing, so they do not "
                        "shimmer; moving parts pass untouched (default on)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    p.set_defaults(func=cmd_stylize)


def add_style(sub):
    p = sub.add_parser("style", help="a painting's model file, with no training (the arbitrary-style network)",
                       description="Writes a painting's style vector as a model file that stylize, export, sheet "
                                   "and bench take as any other. Training a network for the painting "
                                   "(`stylemirror train`) reaches a better likeness of that one painting.")
    p.add_argument("painting", metavar="PAINTING", help="the painting (any picture file)")
    p.add_argument("-o", "--output", help="the model file (default: PAINTING's name.safetensors in this folder); "
                                          "an existing one is replaced only where it is an earlier style file")
    p.set_defaults(func=cmd_style)


def add_export(sub):
    p = sub.add_parser("export", help="write a model in another format")
    p.add_argument("model", metavar="MODEL", type=path_text, help=MODEL_HELP)
    p.add_argument("--format", required=True, choices=["ml5", "onnx", "safetensors"])
    p.add_argument("-o", "--output", required=True, type=path_text,
                   help="output folder (ml5) or file (.onnx, .safetensors). An existing one is replaced only "
                        "where it is an earlier export of the same format (an ml5 model folder, or a file "
                        "stylemirror exported); anything else is refused, to keep your files")
    p.add_argument("--force", action="store_true",
                   help="also replace a model of the same format that stylemirror did not export "
                        "(never anything else)")
    p.set_defaults(func=cmd_export)


def add_train(sub):
    p = sub.add_parser("train", help="train a style network (the flags of fast-style-transfer's style.py)")
    train.add_arguments(p)
    p.add_argument("--mirror", action="store_true",
                   help="serve the mirror page beside the run (127.0.0.1:8000, or a free port) and open it: "
                        "your style as it learns, on your camera, with each new checkpoint")
    p.set_defaults(func=cmd_train)


def add_mirror(sub):
    p = sub.add_parser("mirror", help="the live webcam style mirror, in your browser")
    p.add_argument("--models", nargs="*", type=path_text, metavar="DIR",
                   help="more folders with models (ml5 folders or training --model-dirs)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only; with --lan "
                                  "0.0.0.0); any other than 127.0.0.1 needs the access token printed with the URL")
    p.add_argument("--lan", action="store_true",
                   help="for a phone or tablet on your network: HTTPS with this machine's own certificate, an "
                        "access token in the URL, and a QR code of it to scan")
    p.add_argument("--kiosk", action="store_true",
                   help="open the page as a kiosk: the stylized camera full screen, no controls, the styles in "
                        "turn (?cycle=SECONDS on the URL, default 30; 0: off)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--watch", action="append", default=[], type=path_text, metavar="CHECKPOINT_DIR",
                   help="show a training run's network as it learns (going, finished, or synced from another "
                        "machine; one not started yet is waited for); several times for several runs")
    p.set_defaults(func=cmd_mirror)


def add_bench(sub):
    p = sub.add_parser("bench", help="measure speed (beside a plain reference) or training quality")
    benchmarks = p.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        b = benchmarks.add_parser(name, help=module.HELP, description=module.HELP,
                                  formatter_class=ShowDefaults)
        module.add_arguments(b)
        b.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
        b.set_defaults(func=cmd_bench, bench=module.run)


def add_fetch(sub):
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


def add_sheet(sub):
    p = sub.add_parser("sheet", help="one photo through every model the mirror lists, as a labelled grid picture")
    p.add_argument("photo", metavar="PHOTO", type=path_text)
    p.add_argument("-o", "--output", required=True, type=path_text, help="the sheet picture (.png, .jpg ...)")
    p.add_argument("--models", nargs="*", type=path_text, metavar="DIR",
                   help="more folders with models, as `stylemirror mirror --models` takes them")
    p.add_argument("--tile-size", type=positive_int, default=256, help="the longer side of each tile (default 256)")
    p.set_defaults(func=cmd_sheet)


def add_models(sub):
    p = sub.add_parser("models", help="list or pull ml5's published styles")
    p.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=cmd_models)


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
