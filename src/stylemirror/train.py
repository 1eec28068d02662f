"""`stylemirror train`: the fast-style-transfer recipe (Johnson et al.), in PyTorch.

One loop: stylize a batch, score it with the loss network, step Adam. Around it: resuming
from the newest checkpoint, checkpoints on a schedule and on SIGTERM, a log, a plot, preview
pictures, and the final models. Runs on one device or many with `torchrun` (DDP)."""

import argparse
import dataclasses
import datetime
import functools
import json
import os
import re
import signal
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import atomic, data, formats, loss_network, watch
from .arguments import (crop_size, layer_list, non_negative_float, positive_float, positive_int, weight,
                        workers_count, zoom_factor)
from .devices import pick_device
from .errors import UserError
from .images import style_name, style_record
from .loss_network import LOSS_KEYS, WEIGHTED_TERMS
from .network import ARCHITECTURES, DECODERS, ENCODERS, TransformNet
from .paths import check_style_name

MAX_BAD_STEPS = 5  # consecutive non-finite losses before giving up
# torch.compile takes about a minute on a 2-core CPU and then makes a 256 px step about 1.5x
# faster there (`stylemirror bench train`); small crops gain less: worth it from ~500 steps.
COMPILE_MIN_STEPS = 500


def option(default=MISSING, help=None, *, recipe=False, **settings):
    """A TrainConfig field and its `train` flag: `help` and `settings` (type, choices, action)
    are argparse's; `check`, where given, is the rule check_config applies instead of the
    type's (a flag parsed plainly, refused after parsing). `recipe` fields say how the network
    was trained: model.json records them and a resumed run must share them (unless
    `resume_may_change`). `before`: what a checkpoint from before the field meant;
    `saved_as`: its key in model.json, where that differs."""
    return field(default=default, metadata={"help": help, "recipe": recipe, **settings})


@dataclass
class TrainConfig:
    """One training run: every field is a `stylemirror train` flag, with its default here."""
    style: tuple = option(action="append", help="the style picture; several (--style a.jpg --style b.jpg ...) "
                          "train one network for all of them (each its own instance-norm scale and shift, every "
                          "conv shared), named by file name")
    checkpoint_dir: str = option(help="checkpoints, log and loss plot; reruns resume from here")
    train_path: str = option("data/train2014", help="folder of training pictures, searched recursively")
    vgg_path: str | None = option(None, help="VGG19 weights: MatConvNet .mat or torchvision state dict "
                                             "(default: torchvision's, downloaded once)")
    model_dir: str | None = option(None, help="where the final models go (default: CHECKPOINT_DIR/model)")
    test: str | None = option(None, help="a picture to stylize at every checkpoint")
    test_dir: str | None = option(None, help="where those previews go")
    epochs: int = option(2, type=positive_int, help="passes over the training pictures")
    batch_size: int = option(4, type=positive_int, recipe=True, help="pictures a step (a process's, under torchrun)")
    checkpoint_iterations: int = option(2000, type=positive_int, help="steps between checkpoints")
    content_weight: float = option(7.5, type=float, check=weight, recipe=True)
    style_weight: float = option(100.0, type=float, check=weight, recipe=True)
    tv_weight: float = option(200.0, type=float, check=weight, recipe=True)
    learning_rate: float = option(1e-3, type=float, check=positive_float, recipe=True)
    image_size: int = option(256, type=crop_size, recipe=True, help="training crop size (default %(default)s)")
    style_size: int | None = option(None, type=crop_size, recipe=True,
                                    help="downscale the style picture to at most N pixels")
    style_layers: tuple = option(loss_network.STYLE_LAYERS, type=layer_list, recipe=True,
                                 help="comma-separated VGG19 layers for the style loss (default relu1_1,...,relu5_1)")
    content_layer: str = option(loss_network.CONTENT_LAYER, recipe=True,
                                help="VGG19 layer for the content loss (default %(default)s)")
    arch: str = option("standard", choices=tuple(ARCHITECTURES), recipe=True, before="standard",
                       help="standard (Johnson's; runs in ml5.js too) or lite (~4.8x fewer FLOPs, for weak devices)")
    # The exported file's own "decoder" and "encoder" name its layers as ml5.js runs them.
    decoder: str = option("resize", choices=tuple(DECODERS), recipe=True, before="deconv3", saved_as="trained_decoder",
                          help="upsampling: resize (nearest 2x + 3x3 conv: no checkerboard grid; ml5.js runs it as a "
                               "4x4 transposed conv) or deconv3 (ml5's published models' 3x3 transposed conv, which "
                               "paints a grid)")
    encoder: str = option("blur", choices=tuple(ENCODERS), recipe=True, before="conv3", saved_as="trained_encoder",
                          help="downsampling: blur (3x3 conv blurred before keeping every other pixel: anti-aliased, "
                               "less content drift, steadier on moving pictures; ml5.js runs it as a 5x5 stride-2 "
                               "conv; 1.1x the time) or conv3 (ml5's published models' 3x3 stride-2 conv)")
    stability_weight: float = option(0.0, type=non_negative_float, check=weight, recipe=True,
                                     help="train against flicker: a slightly moved, noisier copy of a picture should "
                                          f"stylize to the stylized picture, moved (default %(default)g: off; "
                                          f"{loss_network.STABILITY_WEIGHT:g} is the weight it was measured at: a "
                                          "steadier pan for one more style-network pass a step; `stylemirror bench "
                                          "flicker`)")
    grid_weight: float = option(loss_network.GRID_WEIGHT, type=non_negative_float, check=weight, recipe=True,
                                before=0.0,
                                help="train against a grid: penalise what of each stylized picture repeats every 2 "
                                     "or 4 pixels, the pattern stride-2 layers paint (default %(default)g; 0: off; "
                                     "`stylemirror bench quality` measures the grid)")
    # Other crops on a resume have always been allowed.
    crop_zoom: float = option(2.0, type=zoom_factor, recipe=True, resume_may_change=True,
                              help="train on random square crops of 1/1 to 1/Z of each picture's shorter side "
                                   "(default 2; 1: the centre square only)")
    seed: int = option(42, type=int, recipe=True, help="the seed of the initial weights, the crops and the "
                                                       "steadiness term's shifts; scores swing with it, so compare "
                                                       "recipes over several")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1, mps ...")
    fresh: bool = option(False, action="store_true", help="ignore existing checkpoints and start over")
    compile: bool | None = option(None, action=argparse.BooleanOptionalAction,
                                  help=f"torch.compile the step (default: on CUDA, and for runs of {COMPILE_MIN_STEPS} "
                                       "steps or more)")
    bf16: bool | None = option(None, action=argparse.BooleanOptionalAction,
                               help="the loss network in bf16 (default: on CUDA and on CPUs with native bf16; "
                                    "about 1.6x faster there, style score a little lower: bench/README.md)")
    workers: int | None = option(None, type=int, check=workers_count,
                                 help="threads decoding training pictures (default: up to 8; 0: none)")
    max_steps: int | None = option(None, type=positive_int, help="stop after N steps")
    log_interval: int = option(100, type=positive_int, help="steps between log rows")

    def __post_init__(self):
        self.style = as_tuple(self.style)
        self.style_layers = tuple(self.style_layers)

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def as_tuple(style) -> tuple:
    """One style picture or several, as a tuple (a checkpoint's config may hold either)."""
    return (style,) if isinstance(style, str) else tuple(style)


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def add_arguments(parser, only=None):
    """`stylemirror train`'s flags: one for each TrainConfig field (`only`: of these), its
    default and help from there."""
    for f in fields(TrainConfig):
        if only is not None and f.name not in only:
            continue
        settings = {k: v for k, v in f.metadata.items() if k in ("help", "type", "choices", "action")}
        parser.add_argument(flag(f.name), **settings,
                            **({"required": True} if f.default is MISSING else {"default": f.default}))


# How a network was trained: model.json records RECORDED; a resumed run must share RECIPE.
RECORDED = tuple(f.name for f in fields(TrainConfig) if f.metadata["recipe"])
RECIPE = tuple(f.name for f in fields(TrainConfig) if f.metadata["recipe"] and not f.metadata.get("resume_may_change"))
# A checkpoint from before a recipe field was added was trained as this says.
BEFORE_FIELDS = {f.name: f.metadata["before"] for f in fields(TrainConfig) if "before" in f.metadata}


class Stop:
    """SIGTERM (what cloud schedulers send before preemption) or Ctrl-C: finish the step, save
    a checkpoint, stop. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore(self):
        """The handlers as they were: Ctrl-C works again for whoever called train()."""
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    @property
    def requested(self):
        return self.signal is not None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.signal = signum


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"ckpt_{step:08d}.pt"


def checkpoints(folder: Path) -> list[Path]:
    """A run's checkpoints, the newest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt_*.pt") if (m := re.fullmatch(r"ckpt_(\d+)\.pt", p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def newest_checkpoint(folder: Path) -> Path | None:
    return next(iter(checkpoints(folder)), None)


def load_style(path, size):
    from .images import open_picture, picture_tensor

    image = open_picture(path).convert("RGB")
    if size:
        image.thumbnail((size, size))
    return picture_tensor(image)


def tune(device):
    """cuDNN's autotuner and TF32 on a GPU, for a training step (bench train times the same)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def setup_device(cfg):
    """(device, rank, world): torchrun's environment makes this a DDP worker."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    tune(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def plot_losses(rows, dest):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in rows]
    for key in (*LOSS_KEYS, *WEIGHTED_TERMS):
        if key not in rows[0]:
            continue
        ax.plot(steps, [r[key] for r in rows], label=key, linewidth=2 if key == "total" else 1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def model_info(cfg, step, epochs_trained=None) -> dict:
    """How the network was trained, as model.json and the safetensors metadata record it: every
    recipe field, the style pictures, the run's length, its VGG and date."""
    paths = [str(Path(p).resolve()) for p in cfg.style]
    info = {"style": paths[0] if len(paths) == 1 else paths, "steps": step, "epochs": cfg.epochs}
    if epochs_trained is not None:  # --epochs is the plan; --max-steps may end the run before it
        info["epochs_trained"] = round(epochs_trained, 4)
    for f in fields(cfg):
        if f.name in RECORDED:
            value = getattr(cfg, f.name)
            info[f.metadata.get("saved_as", f.name)] = list(value) if isinstance(value, tuple) else value
    info["vgg"] = str(cfg.vgg_path or "torchvision vgg19")
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return info


class RecipeChanged(UserError):
    """A checkpoint's run was trained with another recipe: never resumed, never skipped."""


class Run:
    """Everything rank 0 writes into --checkpoint-dir and --test-dir."""

    def __init__(self, cfg, net, optimizer, rank, world=1):
        self.cfg, self.net, self.optimizer, self.rank, self.world = cfg, net, optimizer, rank, world
        self.folder = Path(cfg.checkpoint_dir)
        self.log_path = self.folder / "train_log.jsonl"
        self.rows = []

    def resume(self, device, steps_per_epoch):
        """Restore the newest checkpoint (unless --fresh); return (its Position, its path), or
        the start and None for a fresh run."""
        found = [] if self.cfg.fresh else checkpoints(self.folder)
        if not found:
            return Position(steps_per_epoch=steps_per_epoch), None
        for newest in found:  # a damaged one (a full disk, a copy cut short): the one before it
            try:
                state = self.restore(newest, device)
                break
            except RecipeChanged:
                raise
            except UserError as e:
                if newest == found[-1]:
                    raise
                if self.rank == 0:
                    tqdm.write(f"stylemirror: {e}; resuming from the checkpoint before it", file=sys.stderr)
        torch.set_rng_state(state["rng"].cpu())
        if self.log_path.exists():  # forget rows logged after the checkpoint (a killed run)
            self.rows = [r for r in map(json.loads, self.log_path.read_text().splitlines()) if r["step"] <= state["step"]]
            if self.rank == 0:
                atomic.write_bytes(self.log_path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        return Position(state["step"], state["epoch"], state["batch"], steps_per_epoch), newest

    def restore(self, path, device) -> dict:
        """Load a checkpoint into the network and optimizer, after checking its recipe."""
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            self.check_recipe(json.loads(state.get("config", "{}")), path, json.loads(state.get("styles", "[]")))
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(as_fused_adam(state["optimizer"]))
        except UserError:
            raise
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{path}: cannot resume from this checkpoint ({first}); use --fresh to start over") from None
        return state

    def check_recipe(self, stored: dict, path, stored_styles_records=()):
        """Refuse to go on with other weights, sizes, architecture or style pictures than the
        checkpoint's run: the result would silently be neither recipe. A style picture may
        move; its content (SHA-256, recorded in checkpoints) may not change."""
        mine = json.loads(json.dumps(dataclasses.asdict(self.cfg)))  # tuples as JSON has them
        stored = {**BEFORE_FIELDS, **stored}
        changed = [k for k in RECIPE if k in stored and stored[k] != mine[k]]
        what = [f"{flag(k)} {stored[k]} (now {mine[k]})" for k in changed]
        # The styles by name, in order (a style's row of norm parameters is its place in the
        # list); a single style's picture may move or change, as before multi-style training.
        stored_styles = [style_name(p) for p in as_tuple(stored.get("style", []))]
        my_styles = [style_name(p) for p in self.cfg.style]
        if stored_styles and len(my_styles) + len(stored_styles) > 2 and stored_styles != my_styles:
            what.append(f"--style {', '.join(stored_styles)} (now {', '.join(my_styles)})")
        elif stored_styles_records and [r["sha256"] for r in stored_styles_records] != [
                style_record(p)["sha256"] for p in self.cfg.style]:
            what.append(f"other --style pictures ({', '.join(my_styles)}: their content has changed)")
        if what:
            raise RecipeChanged(f"{path} was trained with {', '.join(what)}: rerun with those to resume, "
                            "or start over with --fresh or another --checkpoint-dir")

    def start(self, at, total_steps, resumed, note, pictures, device, on_ready):
        """Say how the run starts, show its network live, and call `on_ready` (rank 0)."""
        if self.rank == 0 and resumed:
            print(f"resuming from {resumed} (step {at.step} of {total_steps}, epoch {at.epoch + 1}){note}; "
                  "--fresh starts over", flush=True)
        elif self.rank == 0:
            print(f"starting a fresh run: {pictures} pictures, {total_steps} steps on {device}"
                  f"{f' x {self.world} processes' if self.world > 1 else ''}{note}", flush=True)
        if at.step < total_steps:  # the mirror shows the network from the start, not only from the first checkpoint
            self.write_live(at, total_steps)
        if on_ready and self.rank == 0:
            on_ready()

    def log(self, row):
        self.rows.append(row)
        if self.rank == 0:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def checkpoint(self, at):
        if self.rank != 0:
            return
        state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": at.step, "epoch": at.epoch, "batch": at.batch, "rng": torch.get_rng_state(),
                 "config": json.dumps(dataclasses.asdict(self.cfg)),
                 "styles": json.dumps([style_record(p) for p in self.cfg.style])}
        with atomic.atomic_path(checkpoint_path(self.folder, at.step)) as tmp:
            torch.save(state, tmp)
        if self.rows:
            plot_losses(self.rows, self.folder / "losses.png")
        if self.cfg.test and self.cfg.test_dir:
            self.preview(at.step)

    def write_live(self, at, total_steps):
        """The network as it is now, for the mirror to show (watch.py); the speed and ETA from
        the log row of this step, where there is one."""
        if self.rank != 0:
            return
        row = self.rows[-1] if self.rows and self.rows[-1]["step"] == at.step else {}
        speed = row.get("images_per_s")
        eta = (total_steps - at.step) * self.cfg.batch_size * self.world / speed if speed else None
        watch.write_live(self.folder, self.net, {
            "step": at.step, "epoch": round(at.epochs, 4), "total_steps": total_steps, "images_per_s": speed, "eta_s": eta,
            "losses": {k: row[k] for k in (*LOSS_KEYS, *WEIGHTED_TERMS) if k in row}})

    def preview(self, step):
        from .images import open_picture, save_picture
        from .stylize import Stylizer

        was_training = self.net.training
        device = next(self.net.parameters()).device
        with torch.random.fork_rng(devices=[]):  # what the preview draws must not move the training's RNG
            for name, net in self.net.each_style():
                suffix = "" if self.net.styles == 1 else f"_{name}"
                stylizer = Stylizer(net, device, engine="torch")
                save_picture(stylizer.picture(open_picture(self.cfg.test)), Path(self.cfg.test_dir) / f"step_{step:08d}{suffix}.png")
        self.net.train(was_training)

    def export(self, step, epochs_trained=None):
        if self.rank != 0:
            return None
        cfg = self.cfg
        out = claim_model_dir(cfg)  # again: files may have appeared there while it trained
        net = TransformNet.named(cfg.arch, cfg.decoder, len(cfg.style), cfg.encoder)
        net.load_state_dict({k: v.float().cpu() for k, v in self.net.state_dict().items()})
        net.eval()
        net.style_info = self.net.style_info
        info = model_info(cfg, step, epochs_trained)
        if net.arch == "standard":  # the only network ml5.js can run
            formats.write_ml5(net, out / "ml5")
        formats.save_safetensors(net, out / "model.safetensors", info)
        formats.export_onnx(net, out / "model.onnx")
        atomic.write_bytes(out / "model.json", json.dumps(info, indent=2).encode())
        return out


@dataclass(frozen=True)
class StepOptions:
    """How the step runs. `stylemirror train` takes bf16 autocast on CUDA and on CPUs that have
    it natively, and compiles as COMPILE_MIN_STEPS says; `bench train --variants` tries each in
    turn. Not channels_last: instance norm hands back contiguous tensors, and the conversions
    around every norm made the step 11% slower on an H200 (bench/README.md)."""
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # torch.compile's "reduce-overhead" mode (CUDA only)

    @classmethod
    def for_device(cls, device, compile_: bool, bf16: bool | None = None) -> "StepOptions":
        cuda = device.type == "cuda"
        if bf16 is None:
            bf16 = cuda or (device.type == "cpu" and cpu_has_bf16())
        return cls(bf16=bf16, compile=compile_)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16, AMX): then bf16 autocast of
    the loss network makes a training step about 1.6x faster on it (`bench train --variants`);
    elsewhere slower."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def prepare(net, criterion, device, world=1, options: StepOptions = StepOptions()):
    """(network, loss) as the loop runs them: DDP under torchrun, and the options."""
    if options.channels_last:
        net.to(memory_format=torch.channels_last)
        criterion.to(memory_format=torch.channels_last)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    if options.compile or options.cuda_graphs:
        mode = "reduce-overhead" if options.cuda_graphs else None
        model, criterion = torch.compile(model, mode=mode), torch.compile(criterion, mode=mode)
    return model, criterion


def forward_backward(model, criterion, optimizer, batch, device, options: StepOptions = StepOptions(),
                     terms: loss_network.ExtraTerms = loss_network.ExtraTerms(), style=None):
    """One step's losses and gradients for a uint8 batch (pinned where the loader pinned it: the
    copy then runs without blocking). The caller applies them with step_unless. `terms`: our
    own grid and steadiness terms. `style`: the one-hot selection of a multi-style network's
    style this batch trains (None: one style)."""
    x = batch.to(device, non_blocking=True).float()
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if style is not None:
        model = functools.partial(model, style=style)
        criterion = functools.partial(criterion, style=style)
    y = model(x)  # fp32: the stylized picture must keep its fine levels for the TV and content losses
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
        losses = criterion(y, x)  # VGG19, ~90% of the step's FLOPs, in bf16; Grams in fp32
    losses = terms.add_to(losses, model, x, y)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()  # on every rank, finite or not: DDP's all-reduce needs all
    return losses


def adam(net, learning_rate):
    """Fused Adam, the one optimizer that can skip a step on the device (step_unless)."""
    return torch.optim.Adam(net.parameters(), lr=learning_rate, fused=True)


def as_fused_adam(saved: dict) -> dict:
    """An Adam state_dict as `adam` loads it: load_state_dict takes the saved groups' settings,
    and checkpoints from before it say fused=None."""
    return {**saved, "param_groups": [{**g, "fused": True, "foreach": None} for g in saved["param_groups"]]}


def step_unless(optimizer, non_finite):
    """optimizer.step(), which changes nothing (weights, Adam's moments, its step count) where
    `non_finite` (a 0-d bool tensor) is true: fused Adam's found_inf, as AMP's GradScaler uses
    it. The host never reads the loss to decide, so the GPU's queue of kernels never drains."""
    optimizer.found_inf = non_finite.float()
    optimizer.step()


class Tally:
    """What a log row reports, summed on the device: adding a step never waits for the GPU;
    `read` (once a log row) does. Counts non-finite steps, and the longest run of them in a row
    that reached into the window (a run may go on across reads)."""

    def __init__(self, device, keys=LOSS_KEYS):
        self.keys = keys
        self.sums = torch.zeros(len(keys) + 2, device=device)  # losses of finite steps, finite steps, non-finite steps
        self.when_non_finite = torch.zeros(len(keys) + 2, device=device)
        self.when_non_finite[-1] = 1
        self.when_finite = torch.tensor([1.0, 0.0], device=device)  # the two counts' share of a finite step
        self.bad_run = torch.zeros(1, device=device)
        self.longest_bad_run = torch.zeros(1, device=device)

    def add(self, losses, non_finite):
        values = torch.cat([torch.stack([losses[k].detach().float() for k in self.keys]), self.when_finite])
        self.sums.add_(torch.where(non_finite, self.when_non_finite, values))
        self.bad_run.add_(1).mul_(non_finite)
        torch.maximum(self.longest_bad_run, self.bad_run, out=self.longest_bad_run)

    def read(self) -> dict:
        *sums, finite, non_finite, longest = torch.cat([self.sums, self.longest_bad_run]).tolist()
        self.sums.zero_()
        self.longest_bad_run.copy_(self.bad_run)
        return {"losses": {k: v / finite for k, v in zip(self.keys, sums)} if finite else None,
                "non_finite": int(non_finite), "longest_bad_run": int(longest)}


def is_model_info(path) -> bool:
    """A model.json that `model_info` wrote (told by its content, not its name)."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(info, dict) and {"style", "steps", "vgg", "date"} <= info.keys()


def claim_model_dir(cfg) -> Path:
    """--model-dir (default CHECKPOINT_DIR/model), after checking that the models written there
    replace nothing but a previous run's models, told by their content: the user's other
    files there, and their own files of those names, are kept."""
    out = Path(cfg.model_dir or Path(cfg.checkpoint_dir) / "model")
    hint = "move them away or choose another --model-dir"
    if cfg.arch == "standard":
        atomic.claim_folder(out / "ml5", formats.is_ml5_output, "an ml5 model", hint=hint)
    for name, fmt in (("model.safetensors", "safetensors"), ("model.onnx", "onnx")):
        atomic.claim_file(out / name, lambda p, fmt=fmt: formats.is_model_file(fmt, p),
                          f"{formats.FORMAT_NAMES[fmt]} that stylemirror exported", hint=hint)
    atomic.claim_file(out / "model.json", is_model_info, "a model.json that stylemirror wrote", hint=hint)
    return out


def stopped(why: str, run) -> UserError:
    return UserError(f"{why}; stopped. Last good checkpoint: {newest_checkpoint(run.folder) or 'none yet'}. "
                     "Try a lower --learning-rate")


def check_config(cfg):
    """Refuse what cannot train, by its flag's name, before anything is loaded: the rules of
    the command line's types and choices, for configs made in Python too."""
    for f in fields(cfg):
        value, choices = getattr(cfg, f.name), f.metadata.get("choices")
        rule = f.metadata.get("check", f.metadata.get("type"))
        if value is not None and hasattr(rule, "accept") and not rule.accept(value):
            raise UserError(f"{flag(f.name)} {rule.why}, got {value}")
        if choices and value not in choices:
            raise UserError(f"{flag(f.name)} {value}: unknown (use {' or '.join(choices)})")
    claim_model_dir(cfg)
    if cfg.test and not cfg.test_dir:
        raise UserError("--test needs --test-dir (where the preview pictures go)")
    if cfg.test_dir and Path(cfg.test_dir).exists() and not Path(cfg.test_dir).is_dir():
        raise UserError(f"--test-dir {cfg.test_dir} is a file; it must be a folder for the preview pictures")
    names = [style_name(p) for p in cfg.style]
    if not names:
        raise UserError("--style: give a style picture")
    for path, name in zip(cfg.style, names):  # a style is selected and exported by its name
        check_style_name(name, f"--style {path}")
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"--style: two style pictures named {', '.join(twice)}: a multi-style model names each "
                        "style by its file name, so rename one")
    if not cfg.style_layers:
        raise UserError("--style-layers: give at least one VGG19 layer, e.g. relu1_1,relu2_1,relu3_1")
    for layer in (*cfg.style_layers, cfg.content_layer):
        if not layer.startswith("relu") or layer not in loss_network.VGG19_LAYERS:
            raise UserError(f"unknown VGG19 layer {layer!r} (use relu1_1 ... relu5_4)")


@dataclass
class Position:
    """Where a run is: the steps taken, and the epoch and the batch in it that the next step takes."""
    step: int = 0
    epoch: int = 0
    batch: int = 0
    steps_per_epoch: int = 1

    @property
    def epochs(self) -> float:
        """How far the run is, in epochs."""
        return self.epoch + self.batch / self.steps_per_epoch

    def advance(self):
        self.step += 1
        self.batch += 1
        if self.batch == self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0


class Window:
    """The steps since the last log row: how many images, from which step, since when."""

    def __init__(self, step: int):
        self.images, self.first_step, self.start = 0, step + 1, time.perf_counter()


def load_styles(cfg) -> list:
    """The style pictures as tensors; also opens the preview picture: the cheap checks first."""
    styles = [load_style(p, cfg.style_size) for p in cfg.style]
    if cfg.test:
        from .images import open_picture
        open_picture(cfg.test)
    return styles


def perceptual_loss(cfg, styles) -> loss_network.PerceptualLoss:
    vgg = loss_network.load_vgg(cfg.vgg_path or loss_network.default_vgg_path(),
                                (*cfg.style_layers, cfg.content_layer))
    return loss_network.PerceptualLoss(vgg, styles[0] if len(styles) == 1 else styles, cfg.content_layer,
                                       cfg.style_layers, cfg.content_weight, cfg.style_weight, cfg.tv_weight)


def style_network(cfg) -> TransformNet:
    net = TransformNet.named(cfg.arch, cfg.decoder, len(cfg.style), cfg.encoder)
    if len(cfg.style) > 1:  # the names travel with it into every file written of it (live ones too)
        net.style_info = tuple(style_record(p) for p in cfg.style)
    return net


def style_selections(count: int, device) -> list | None:
    """Several styles: each step's batch trains toward one, cycled in --style's order (step %
    count), not sampled: every style gets an equal share of the steps, and the order depends
    only on the step number, so it is deterministic and a resumed run goes on where it stopped."""
    return [row.clone() for row in torch.eye(count, device=device)] if count > 1 else None


def planned_steps(cfg, steps_per_epoch) -> tuple[int, str]:
    """The steps the run ends at, and a note where --epochs ends it before --max-steps."""
    total = cfg.epochs * steps_per_epoch
    if not cfg.max_steps:
        return total, ""
    note = "" if cfg.max_steps <= total else (
        f" (--epochs {cfg.epochs} ends before --max-steps {cfg.max_steps}: raise --epochs for more)")
    return min(total, cfg.max_steps), note


class Pictures:
    """The training pictures, and those found unreadable (each named once, when it is found)."""

    def __init__(self, cfg, rank, world):
        self.cfg, self.rank, self.world = cfg, rank, world
        self.files = data.find_images(cfg.train_path)
        self.unreadable = set()
        self.steps_per_epoch = data.TrainingOrder.batches_per_epoch(len(self.files), cfg.batch_size, world)
        if self.steps_per_epoch == 0:
            raise UserError(f"{cfg.train_path}: {len(self.files)} pictures, fewer than one batch "
                            f"({cfg.batch_size} x {world} processes)")

    def batches(self, at, pin_memory):
        """The run's batches from `at` on, each process its share, less unreadable pictures."""
        cfg = self.cfg
        order = data.TrainingOrder(len(self.files), cfg.batch_size, cfg.epochs, cfg.seed, self.rank, self.world,
                                   at.epoch, at.batch)
        return self.readable(data.loader(self.files, cfg.image_size, cfg.batch_size, order, cfg.workers, pin_memory,
                                         max_zoom=cfg.crop_zoom, seed=(cfg.seed, self.rank), first_step=at.step))

    def readable(self, batches):
        """The loader's batches less their unreadable pictures; a batch with none left is the
        last one again."""
        last = None
        for batch, bad in batches:
            for i in set(bad) - self.unreadable:
                self.unreadable.add(i)
                if self.rank == 0:
                    tqdm.write(f"skipping unreadable picture {self.files[i]}")
            if len(batch) == 0:
                if last is None:
                    continue
                batch = last
            last = batch
            yield batch

    def say_skipped(self):
        if self.unreadable and self.rank == 0:
            print(f"skipped {len(self.unreadable)} unreadable files of {len(self.files)}", flush=True)

    def none_readable(self) -> UserError:
        return UserError(f"{self.cfg.train_path}: none of its {len(self.files)} pictures could be read "
                         f"({len(self.unreadable)} unreadable); nothing was trained and no model exported")


def fastest_step(cfg, net, criterion, device, world, steps_left):
    """(model, criterion, options): the step as this device runs it fastest."""
    compile_ = cfg.compile if cfg.compile is not None else (device.type == "cuda" or steps_left >= COMPILE_MIN_STEPS)
    options = StepOptions.for_device(device, compile_, cfg.bf16)
    return *prepare(net, criterion, device, world, options), options


def agree_across_ranks(non_finite, stop, device, world):
    """Every rank must skip, or stop, at the same step (a signal to any rank stops them all):
    waits for the GPU."""
    if world == 1:
        return non_finite
    flags = torch.stack([torch.tensor(float(stop.requested), device=device), non_finite.float()])
    dist.all_reduce(flags)
    if flags[0].item() > 0 and not stop.requested:
        stop.signal = signal.SIGTERM
    return flags[1] > 0


def log_window(run, tally, window, at, unreadable: int, progress):
    """The log row of the steps since the last one; non-finite steps said, and a run of
    MAX_BAD_STEPS of them stops the run."""
    seen = tally.read()  # a single process waits for the GPU here only
    elapsed = time.perf_counter() - window.start
    if seen["non_finite"] and run.rank == 0:
        tqdm.write(f"steps {window.first_step}-{at.step}: {seen['non_finite']} non-finite loss(es), "
                   "those steps skipped (weights unchanged)")
    if seen["longest_bad_run"] >= MAX_BAD_STEPS:
        raise stopped(f"the loss was non-finite {seen['longest_bad_run']} steps in a row", run)
    if seen["losses"]:
        row = {"step": at.step, "epoch": round(at.epochs, 4), **seen["losses"],
               "images_per_s": window.images / elapsed, "unreadable": unreadable}
        run.log(row)
        progress.set_postfix(loss=f"{row['total']:.4g}", img_s=f"{row['images_per_s']:.1f}")


def save_checkpoint(run, at, total_steps):
    """A checkpoint, and the network shown live. A step can overflow the weights while its loss
    was finite (Adam's lr x moment past fp32's range): such weights are never saved or shown."""
    if not torch.stack([torch.isfinite(p).all() for p in run.net.parameters()]).all():
        raise stopped(f"the weights became non-finite by step {at.step}", run)
    run.checkpoint(at)
    run.write_live(at, total_steps)


def stopped_by_signal(stop, step, rank) -> int:
    if rank == 0:
        print(f"stopped by {signal.Signals(stop.signal).name} at step {step}: checkpoint saved, "
              "rerun the same command to resume", flush=True)
    return 128 + stop.signal


def export(run, at, world) -> int:
    out = run.export(at.step, at.epochs)
    step = at.step
    if run.rank == 0:
        print(f"done: {step} steps; models in {out}", flush=True)
    if world > 1:
        dist.barrier()
    return 0


def train(cfg: TrainConfig, on_ready=None) -> int:
    """Train; `on_ready` is called (rank 0) once the run has a network to show. Returns the exit
    status: 0 when finished (models exported), 128 + the signal's number when a signal stopped it."""
    # Setup: the cheap checks first, so that a mistake fails fast; the loss network before
    # the style network: both draw their initial weights from the seeded generator.
    check_config(cfg)
    device, rank, world = setup_device(cfg)
    torch.manual_seed(cfg.seed)
    styles = load_styles(cfg)
    pictures = Pictures(cfg, rank, world)
    criterion = perceptual_loss(cfg, styles).to(device)
    net = style_network(cfg).to(device)
    optimizer = adam(net, cfg.learning_rate)
    Path(cfg.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    run = Run(cfg, net, optimizer, rank, world)
    at, resumed = run.resume(device, pictures.steps_per_epoch)
    first_step, (total_steps, note) = at.step, planned_steps(cfg, pictures.steps_per_epoch)
    run.start(at, total_steps, resumed, note, len(pictures.files), device, on_ready)

    # The step as this device runs it fastest, and what the loop keeps count of.
    model, criterion, options = fastest_step(cfg, net, criterion, device, world, total_steps - at.step)
    terms, selections = loss_network.ExtraTerms(cfg.grid_weight, cfg.stability_weight), style_selections(len(styles), device)
    stop, window = Stop(), Window(at.step)
    tally = Tally(device, LOSS_KEYS + terms.names)
    progress = tqdm(total=total_steps, initial=at.step, unit="step", disable=rank != 0, dynamic_ncols=True)
    net.train()
    batches = pictures.batches(at, pin_memory=device.type == "cuda") if at.step < total_steps else ()

    # The loop: a step a batch; a log row and a checkpoint when due, and when it stops.
    try:
        for batch in batches:
            style = None if selections is None else selections[at.step % len(selections)]
            losses = forward_backward(model, criterion, optimizer, batch, device, options, terms, style)
            non_finite = agree_across_ranks(~torch.isfinite(losses["total"].detach()), stop, device, world)
            step_unless(optimizer, non_finite)
            tally.add(losses, non_finite)
            window.images += len(batch) * world
            at.advance()
            progress.update(1)
            stopping = stop.requested or at.step >= total_steps
            checkpoint_due = at.step % cfg.checkpoint_iterations == 0 or stopping
            if at.step % cfg.log_interval == 0 or checkpoint_due:
                log_window(run, tally, window, at, len(pictures.unreadable), progress)
                window = Window(at.step)
            if checkpoint_due:
                save_checkpoint(run, at, total_steps)
                window.start = time.perf_counter()  # checkpoint time is not training speed
            if stopping:
                break
    finally:
        stop.restore()
        progress.close()

    # The end: the models exported, unless a signal stopped the run.
    pictures.say_skipped()
    if stop.requested:
        return stopped_by_signal(stop, at.step, rank)
    if at.step == first_step < total_steps:  # every batch was unreadable: not one step taken
        raise pictures.none_readable()
    return export(run, at, world)
