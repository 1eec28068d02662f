"""The `stylemirror` command."""

import argparse
import sys

from .errors import UserError


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here")
    return name


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def cmd_stylize(args):
    from . import formats, stylize

    net = formats.load_model(args.model)
    options = stylize.Options(max_size=args.max_size, preserve_colors=args.preserve_colors,
                              strength=args.strength, batch_size=args.batch_size)
    stylizer = stylize.Stylizer(net, pick_device(args.device), options)
    for dest in stylize.run(stylizer, args.inputs, args.output):
        print(dest)


def cmd_export(args):
    from . import formats

    net = formats.load_model(args.model)
    writer = {"ml5": formats.write_ml5, "onnx": formats.export_onnx,
              "safetensors": formats.save_safetensors}[args.format]
    writer(net, args.output)
    print(args.output)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylemirror", description="Train, export and run fast neural style transfer.")
    sub = parser.add_subparsers(dest="command", required=True)
    model_help = "an ml5 model folder, a .safetensors file, or a published style name (see `stylemirror models`)"

    p = sub.add_parser("stylize", help="stylize pictures, folders of pictures and videos")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="pictures, videos or folders")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--max-size", type=positive_int, help="downscale so the longer side is at most N pixels")
    p.add_argument("--preserve-colors", action="store_true", help="keep the original colours, style only the luminance")
    p.add_argument("--strength", type=unit_float, default=1.0, help="0..1: blend with the original (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="frames per batch for folders and videos")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("export", help="write a model in another format")
    p.add_argument("model", metavar="MODEL", help=model_help)
    p.add_argument("--format", required=True, choices=["ml5", "onnx", "safetensors"])
    p.add_argument("-o", "--output", required=True, help="output folder (ml5) or file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list or pull ml5's published styles")
    p.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"stylemirror: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("stylemirror: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
