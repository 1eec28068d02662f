"""`stylemirror train`: the fast-style-transfer recipe (Johnson et al.), in PyTorch.

One loop: stylize a batch, score it with the loss network, step Adam. Around it: resuming
from the newest checkpoint, checkpoints on a schedule and on SIGTERM, a log, a plot, preview
pictures, and the final models. Runs on one device or many with `torchrun` (DDP)."""

import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import atomic, data, formats, loss_network, watch
from .devices import pick_device
from .errors import UserError
from .loss_network import LOSS_KEYS, WEIGHTED_TERMS
from .network import ARCHITECTURES, DECODERS, ENCODERS, TransformNet

MAX_BAD_STEPS = 5  # consecutive non-finite losses before giving up
# What a resumed run must share with the run that wrote the checkpoint (the rest, such as
# --epochs, --checkpoint-iterations or the paths, may change between runs).
RECIPE = ("arch", "decoder", "encoder", "stability_weight", "grid_weight", "batch_size", "image_size", "style_size", "content_weight", "style_weight", "tv_weight",
          "learning_rate", "style_layers", "content_layer", "seed")


@dataclass
class TrainConfig:
    style: str | list  # the style picture; a list of several trains one multi-style network
    checkpoint_dir: str
    train_path: str = "data/train2014"
    vgg_path: str | None = None
    model_dir: str | None = None
    test: str | None = None
    test_dir: str | None = None
    epochs: int = 2
    batch_size: int = 4
    checkpoint_iterations: int = 2000
    content_weight: float = 7.5
    style_weight: float = 100.0
    tv_weight: float = 200.0
    learning_rate: float = 1e-3
    image_size: int = 256
    style_size: int | None = None
    style_layers: tuple = loss_network.STYLE_LAYERS
    content_layer: str = loss_network.CONTENT_LAYER
    arch: str = "standard"  # a name in network.ARCHITECTURES
    decoder: str = "resize"  # a name in network.DECODERS: "resize" paints no checkerboard grid
    encoder: str = "blur"  # a name in network.ENCODERS: "blur" blurs before downsampling (less aliasing)
    stability_weight: float = loss_network.STABILITY_WEIGHT  # the steadiness term (loss_network.stability_loss); 0: off
    grid_weight: float = loss_network.GRID_WEIGHT  # the term against a 2- and 4-pixel grid (loss_network.grid_loss); 0: off
    crop_zoom: float = 2.0  # random crops of 1/1 .. 1/crop_zoom of a picture's shorter side; 1: centre crops
    seed: int = 42
    device: str = "auto"
    fresh: bool = False
    compile: bool | None = None  # None: on CUDA, and on CPUs for runs of COMPILE_MIN_STEPS or more
    bf16: bool | None = None  # the loss network under bf16 autocast; None: on CUDA and on CPUs with native bf16
    workers: int | None = None
    max_steps: int | None = None  # stop early (tests, benchmarks)
    log_interval: int = 100
    mirror: bool = False  # serve the mirror page on this run while it trains (rank 0)


class Stop:
    """SIGTERM (what cloud schedulers send before preemption) or Ctrl-C: finish the step, save
    a checkpoint, stop. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    @property
    def requested(self):
        return self.signal is not None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.signal = signum


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"ckpt_{step:08d}.pt"


def newest_checkpoint(folder: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt_*.pt") if (m := re.fullmatch(r"ckpt_(\d+)\.pt", p.name))]
    return max(found)[1] if found else None


def style_paths(style) -> list[str]:
    """TrainConfig.style as a list: one picture or several."""
    return [style] if isinstance(style, str) else list(style)


def style_name(path) -> str:
    """A style's name in a multi-style model: its picture's file name without the extension."""
    return Path(path).stem


def style_record(path) -> dict:
    """{"name", "sha256"} of a style picture, as a multi-style model file records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": style_name(path), "sha256": digest.hexdigest()}


def load_style(path, size):
    from .images import open_picture, picture_tensor

    image = open_picture(path).convert("RGB")
    if size:
        image.thumbnail((size, size))
    return picture_tensor(image)


def setup_device(cfg):
    """(device, rank, world): torchrun's environment makes this a DDP worker."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
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


class Run:
    """Everything rank 0 writes into --checkpoint-dir and --test-dir."""

    def __init__(self, cfg, net, optimizer, rank):
        self.cfg, self.net, self.optimizer, self.rank = cfg, net, optimizer, rank
        self.folder = Path(cfg.checkpoint_dir)
        self.log_path = self.folder / "train_log.jsonl"
        self.rows = []

    def resume(self, device):
        """Restore the newest checkpoint (unless --fresh); return (step, epoch, batch in
        epoch, its path), or zeros and None for a fresh run."""
        newest = None if self.cfg.fresh else newest_checkpoint(self.folder)
        if newest is None:
            return 0, 0, 0, None
        try:
            state = torch.load(newest, map_location=device, weights_only=True)
            self.check_recipe(json.loads(state.get("config", "{}")), newest)
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(as_fused_adam(state["optimizer"]))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{newest}: cannot resume from this checkpoint ({str(e).splitlines()[0]}); "
                            "use --fresh to start over") from None
        torch.set_rng_state(state["rng"].cpu())
        if self.log_path.exists():  # forget rows logged after the checkpoint (a killed run)
            self.rows = [r for r in map(json.loads, self.log_path.read_text().splitlines()) if r["step"] <= state["step"]]
            if self.rank == 0:
                atomic.write_bytes(self.log_path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        return state["step"], state["epoch"], state["batch"], newest

    def check_recipe(self, stored: dict, path):
        """Refuse to go on with other weights, sizes or architecture than the checkpoint's
        run: the result would silently be neither recipe."""
        mine = json.loads(json.dumps(dataclasses.asdict(self.cfg)))  # tuples as JSON has them
        # Checkpoints from before --arch, --decoder, --encoder, --grid-weight.
        stored = {"arch": "standard", "decoder": "deconv3", "encoder": "conv3", "grid_weight": 0.0, **stored}
        changed = [k for k in RECIPE if k in stored and stored[k] != mine[k]]
        what = [f"--{k.replace('_', '-')} {stored[k]} (now {mine[k]})" for k in changed]
        # The styles by name, in order (a style's row of norm parameters is its place in the
        # list); a single style's picture may move or change, as before multi-style training.
        stored_styles = [style_name(p) for p in style_paths(stored.get("style", []))]
        my_styles = [style_name(p) for p in style_paths(self.cfg.style)]
        if stored_styles and len(my_styles) + len(stored_styles) > 2 and stored_styles != my_styles:
            what.append(f"--style {', '.join(stored_styles)} (now {', '.join(my_styles)})")
        if what:
            raise UserError(f"{path} was trained with {', '.join(what)}: rerun with those to resume, "
                            "or start over with --fresh or another --checkpoint-dir")

    def log(self, row):
        self.rows.append(row)
        if self.rank == 0:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def checkpoint(self, step, epoch, batch):
        if self.rank != 0:
            return
        state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": step, "epoch": epoch, "batch": batch, "rng": torch.get_rng_state(),
                 "config": json.dumps(dataclasses.asdict(self.cfg))}
        with atomic.atomic_path(checkpoint_path(self.folder, step)) as tmp:
            torch.save(state, tmp)
        if self.rows:
            plot_losses(self.rows, self.folder / "losses.png")
        if self.cfg.test and self.cfg.test_dir:
            self.preview(step)

    def write_live(self, step, epoch, total_steps, images_per_step):
        """The network as it is now, for the mirror to show (watch.py); the speed and ETA from
        the log row of this step, where there is one."""
        if self.rank != 0:
            return
        row = self.rows[-1] if self.rows and self.rows[-1]["step"] == step else {}
        speed = row.get("images_per_s")
        eta = (total_steps - step) * images_per_step / speed if speed else None
        watch.write_live(self.folder, self.net, {
            "step": step, "epoch": round(epoch, 4), "total_steps": total_steps, "images_per_s": speed, "eta_s": eta,
            "losses": {k: row[k] for k in (*LOSS_KEYS, *WEIGHTED_TERMS) if k in row}})

    def preview(self, step):
        from .images import open_picture, save_picture
        from .stylize import Stylizer

        was_training = self.net.training
        device = next(self.net.parameters()).device
        for name, net in self.net.each_style():
            suffix = "" if self.net.styles == 1 else f"_{name}"
            stylizer = Stylizer(net, device, engine="torch")
            save_picture(stylizer.picture(open_picture(self.cfg.test)), Path(self.cfg.test_dir) / f"step_{step:08d}{suffix}.png")
        self.net.train(was_training)

    def export(self, step):
        if self.rank != 0:
            return None
        cfg = self.cfg
        out = claim_model_dir(cfg)  # again: files may have appeared there while it trained
        paths = style_paths(cfg.style)
        net = TransformNet.named(cfg.arch, cfg.decoder, len(paths), cfg.encoder)
        net.load_state_dict({k: v.float().cpu() for k, v in self.net.state_dict().items()})
        net.eval()
        net.style_info = self.net.style_info
        style = str(Path(paths[0]).resolve()) if len(paths) == 1 else [str(Path(p).resolve()) for p in paths]
        info = {"style": style, "arch": cfg.arch, "trained_decoder": cfg.decoder, "trained_encoder": cfg.encoder, "steps": step, "epochs": cfg.epochs,
                "batch_size": cfg.batch_size, "image_size": cfg.image_size,
                "content_weight": cfg.content_weight, "style_weight": cfg.style_weight,
                "tv_weight": cfg.tv_weight, "learning_rate": cfg.learning_rate,
                "style_layers": list(cfg.style_layers), "content_layer": cfg.content_layer,
                "vgg": str(cfg.vgg_path or "torchvision vgg19"),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if net.arch == "standard":  # the only network ml5.js can run
            formats.write_ml5(net, out / "ml5")
        formats.save_safetensors(net, out / "model.safetensors", info)
        formats.export_onnx(net, out / "model.onnx")
        atomic.write_bytes(out / "model.json", json.dumps(info, indent=2).encode())
        return out


# torch.compile takes about a minute on a 2-core CPU and then makes a 256 px step about 1.5x
# faster there (`stylemirror bench train`); small crops gain less: worth it from ~500 steps.
COMPILE_MIN_STEPS = 500


@dataclass(frozen=True)
class StepOptions:
    """How the step runs. `stylemirror train` takes channels_last and bf16 autocast on CUDA,
    bf16 autocast on CPUs that have it natively, and compiles as COMPILE_MIN_STEPS says;
    `bench train --variants` tries each in turn."""
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # torch.compile's "reduce-overhead" mode (CUDA only)

    @classmethod
    def for_device(cls, device, compile_: bool, bf16: bool | None = None) -> "StepOptions":
        cuda = device.type == "cuda"
        if bf16 is None:
            bf16 = cuda or (device.type == "cpu" and cpu_has_bf16())
        return cls(channels_last=cuda, bf16=bf16, compile=compile_)


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
                     stability_weight: float = 0.0, style=None):
    """One step's losses and gradients for a uint8 batch (pinned where the loader pinned it: the
    copy then runs without blocking). The caller applies them with step_unless. `style`: the
    one-hot selection of a multi-style network's style this batch trains (None: one style)."""
    x = batch.to(device, non_blocking=True).float()
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if style is not None:
        model = functools.partial(model, style=style)
        criterion = functools.partial(criterion, style=style)
    y = model(x)  # fp32: the stylized picture must keep its fine levels for the TV and content losses
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
        losses = criterion(y, x)  # VGG19, ~90% of the step's FLOPs, in bf16; Grams in fp32
    if stability_weight:  # a second pass of the style network only: about 10% more per step
        losses["stability"] = stability_weight * loss_network.stability_loss(model, x, y)
        losses["total"] = losses["total"] + losses["stability"]
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


def claim_model_dir(cfg) -> Path:
    """--model-dir (default CHECKPOINT_DIR/model), after checking that the models written there
    replace nothing but a previous run's models: the user's other files there are kept."""
    out = Path(cfg.model_dir or Path(cfg.checkpoint_dir) / "model")
    hint = "move them away or choose another --model-dir"
    if cfg.arch == "standard":
        atomic.claim_folder(out / "ml5", formats.is_ml5_output, "an ml5 model", hint=hint)
    for name, what in (("model.safetensors", "a .safetensors file"), ("model.onnx", "an ONNX file"),
                       ("model.json", "a JSON file")):
        atomic.claim_file(out / name, {Path(name).suffix}, what, hint=hint)
    return out


def stopped(why: str, run) -> UserError:
    return UserError(f"{why}; stopped. Last good checkpoint: {newest_checkpoint(run.folder) or 'none yet'}. "
                     "Try a lower --learning-rate")


def check_config(cfg):
    for name in ("epochs", "batch_size", "checkpoint_iterations", "image_size"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        raise UserError(f"--learning-rate must be a positive number, got {cfg.learning_rate}")
    for name in ("content_weight", "style_weight", "tv_weight", "grid_weight", "stability_weight"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise UserError(f"--{name.replace('_', '-')} must be a number, 0 or more, got {getattr(cfg, name)}")
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"--workers must be 0 (decode on the main thread) or more, got {cfg.workers}")
    claim_model_dir(cfg)
    if cfg.arch not in ARCHITECTURES:
        raise UserError(f"--arch {cfg.arch}: unknown (use {' or '.join(ARCHITECTURES)})")
    if cfg.decoder not in DECODERS:
        raise UserError(f"--decoder {cfg.decoder}: unknown (use {' or '.join(DECODERS)})")
    if cfg.encoder not in ENCODERS:
        raise UserError(f"--encoder {cfg.encoder}: unknown (use {' or '.join(ENCODERS)})")
    if cfg.test and not cfg.test_dir:
        raise UserError("--test needs --test-dir (where the preview pictures go)")
    names = [style_name(p) for p in style_paths(cfg.style)]
    if not names:
        raise UserError("--style: give a style picture")
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"--style: two style pictures named {', '.join(twice)}: a multi-style model names each "
                        "style by its file name, so rename one")
    for layer in (*cfg.style_layers, cfg.content_layer):
        if not layer.startswith("relu") or layer not in loss_network.VGG19_LAYERS:
            raise UserError(f"unknown VGG19 layer {layer!r} (use relu1_1 ... relu5_4)")


def train(cfg: TrainConfig) -> int:
    """Train. Returns the exit status: 0 when finished (models exported), 128 + the signal's
    number when a signal stopped it (after saving a checkpoint), as shells report it."""
    check_config(cfg)
    device, rank, world = setup_device(cfg)
    torch.manual_seed(cfg.seed)
    paths = style_paths(cfg.style)
    styles = [load_style(p, cfg.style_size) for p in paths]  # the cheap checks first: fail fast
    if cfg.test:
        from .images import open_picture
        open_picture(cfg.test)
    files = data.find_images(cfg.train_path)
    steps_per_epoch = data.TrainingOrder.batches_per_epoch(len(files), cfg.batch_size, world)
    if steps_per_epoch == 0:
        raise UserError(f"{cfg.train_path}: {len(files)} pictures, fewer than one batch "
                        f"({cfg.batch_size} x {world} processes)")
    vgg = loss_network.load_vgg(cfg.vgg_path or loss_network.default_vgg_path(),
                                (*cfg.style_layers, cfg.content_layer))
    criterion = loss_network.PerceptualLoss(
        vgg, styles[0] if len(styles) == 1 else styles, cfg.content_layer, cfg.style_layers,
        cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.grid_weight).to(device)
    # Several styles: each step's batch trains toward one, cycled in --style's order (step %
    # count), not sampled: every style gets an equal share of the steps, and the order depends
    # only on the step number, so it is deterministic and a resumed run goes on where it stopped.
    selections = [row.clone() for row in torch.eye(len(styles), device=device)] if len(styles) > 1 else None

    net = TransformNet.named(cfg.arch, cfg.decoder, len(styles), cfg.encoder).to(device)
    if len(styles) > 1:  # the names travel with it into every file written of it (live ones too)
        net.style_info = tuple(style_record(p) for p in paths)
    optimizer = adam(net, cfg.learning_rate)
    Path(cfg.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    run = Run(cfg, net, optimizer, rank)
    step, epoch, batch_in_epoch, resumed = run.resume(device)
    first_step = step
    total_steps = cfg.epochs * steps_per_epoch
    limit = ""
    if cfg.max_steps:
        if cfg.max_steps > total_steps:
            limit = f" (--epochs {cfg.epochs} ends before --max-steps {cfg.max_steps}: raise --epochs for more)"
        total_steps = min(total_steps, cfg.max_steps)
    if rank == 0:
        if resumed:
            print(f"resuming from {resumed} (step {step} of {total_steps}, epoch {epoch + 1}){limit}; "
                  "--fresh starts over", flush=True)
        else:
            print(f"starting a fresh run: {len(files)} pictures, {total_steps} steps on {device}"
                  f"{f' x {world} processes' if world > 1 else ''}{limit}", flush=True)
    if step < total_steps:  # the mirror shows the network from the start, not only from the first checkpoint
        run.write_live(step, epoch + batch_in_epoch / steps_per_epoch, total_steps, cfg.batch_size * world)
    if cfg.mirror and rank == 0:
        from . import mirror
        mirror.start(watch=[cfg.checkpoint_dir], any_port=True,
                     note=f"it stops with this run; `stylemirror mirror --watch {cfg.checkpoint_dir}` serves it after")

    cuda = device.type == "cuda"
    compile_ = cfg.compile if cfg.compile is not None else (cuda or total_steps - step >= COMPILE_MIN_STEPS)
    options = StepOptions.for_device(device, compile_, cfg.bf16)
    model, criterion = prepare(net, criterion, device, world, options)
    stop = Stop()
    # The losses the next log row averages (and the grid and steadiness terms, when trained).
    tally = Tally(device, LOSS_KEYS + tuple(k for k in WEIGHTED_TERMS if getattr(cfg, f"{k}_weight")))
    window = {"images": 0, "first_step": step + 1, "start": time.perf_counter()}
    unreadable, last_batch = set(), None
    progress = tqdm(total=total_steps, initial=step, unit="step", disable=rank != 0, dynamic_ncols=True)
    net.train()
    order = data.TrainingOrder(len(files), cfg.batch_size, cfg.epochs, cfg.seed, rank, world, epoch, batch_in_epoch)
    if step < total_steps:
        for batch, bad in data.loader(files, cfg.image_size, cfg.batch_size, order, cfg.workers, cuda,
                                      max_zoom=cfg.crop_zoom, seed=(cfg.seed, rank), first_step=step):
            for i in set(bad) - unreadable:
                unreadable.add(i)
                if rank == 0:
                    tqdm.write(f"skipping unreadable picture {files[i]}")
            if len(batch) == 0:  # every picture of the batch was unreadable: reuse the last one
                if last_batch is None:
                    continue
                batch = last_batch
            last_batch = batch
            style = None if selections is None else selections[step % len(selections)]
            losses = forward_backward(model, criterion, optimizer, batch, device, options, cfg.stability_weight, style)
            non_finite = ~torch.isfinite(losses["total"].detach())
            if world > 1:  # every rank must agree to skip or stop at the same step: waits for the GPU
                flags = torch.stack([torch.tensor(float(stop.requested), device=device), non_finite.float()])
                dist.all_reduce(flags)
                non_finite = flags[1] > 0
                if flags[0].item() > 0 and not stop.requested:  # a signal to any rank stops them all
                    stop.signal = signal.SIGTERM
            step_unless(optimizer, non_finite)
            tally.add(losses, non_finite)
            window["images"] += len(batch) * world
            step += 1
            batch_in_epoch += 1
            if batch_in_epoch == steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            progress.update(1)
            stopping = stop.requested or step >= total_steps
            checkpoint_due = step % cfg.checkpoint_iterations == 0 or stopping
            if step % cfg.log_interval == 0 or checkpoint_due:
                seen = tally.read()  # a single process waits for the GPU here only
                elapsed = time.perf_counter() - window["start"]
                if seen["non_finite"] and rank == 0:
                    tqdm.write(f"steps {window['first_step']}-{step}: {seen['non_finite']} non-finite loss(es), "
                               "those steps skipped (weights unchanged)")
                if seen["longest_bad_run"] >= MAX_BAD_STEPS:
                    raise stopped(f"the loss was non-finite {seen['longest_bad_run']} steps in a row", run)
                if seen["losses"]:
                    row = {"step": step, "epoch": round(epoch + batch_in_epoch / steps_per_epoch, 4), **seen["losses"]}
                    row["images_per_s"] = window["images"] / elapsed
                    row["unreadable"] = len(unreadable)
                    run.log(row)
                    progress.set_postfix(loss=f"{row['total']:.4g}", img_s=f"{row['images_per_s']:.1f}")
                window = {"images": 0, "first_step": step + 1, "start": time.perf_counter()}
            if checkpoint_due:
                # A step can overflow the weights while its loss was finite (Adam's lr x moment
                # past fp32's range): such weights are never saved, exported or shown live.
                if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():
                    raise stopped(f"the weights became non-finite by step {step}", run)
                run.checkpoint(step, epoch, batch_in_epoch)
                run.write_live(step, epoch + batch_in_epoch / steps_per_epoch, total_steps, cfg.batch_size * world)
                window["start"] = time.perf_counter()  # checkpoint time is not training speed
            if stopping:
                break
    progress.close()
    if unreadable and rank == 0:
        print(f"skipped {len(unreadable)} unreadable files of {len(files)}", flush=True)
    if stop.requested:
        if rank == 0:
            print(f"stopped by {signal.Signals(stop.signal).name} at step {step}: checkpoint saved, "
                  "rerun the same command to resume", flush=True)
        return 128 + stop.signal
    if step == first_step < total_steps:  # every batch was unreadable: not one step taken
        raise UserError(f"{cfg.train_path}: none of its {len(files)} pictures could be read "
                        f"({len(unreadable)} unreadable); nothing was trained and no model exported")
    out = run.export(step)
    if rank == 0:
        print(f"done: {step} steps; models in {out}", flush=True)
    if world > 1:
        dist.barrier()
    return 0

