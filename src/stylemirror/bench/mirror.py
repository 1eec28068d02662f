"""`stylemirror bench mirror`: frames per second of the mirror page beside ml5.js 0.12.2 in headless Chromium."""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import formats
from ..arguments import frame_size, non_negative_int, number, positive_int
from ..errors import UserError
from .common import CHROMIUM_ARGS, SHARED, machine


def write_y4m(path, picture: Image.Image, frames=30, fps=10):
    """A fake camera for Chromium (--use-file-for-fake-video-capture): 4:2:0 ('C420jpeg')
    YUV frames of a slowly turning picture, `fps` of them a second (the camera's pace: the
    mirror waits for each new frame)."""
    w, h = picture.size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            ycc = np.asarray(picture.rotate(i * 3).convert("YCbCr"))
            f.write(b"FRAME\n" + ycc[..., 0].tobytes())
            for c in (1, 2):
                f.write(np.asarray(Image.fromarray(ycc[..., c]).resize((w // 2, h // 2))).tobytes())



def page_fps(context, url, frames):
    """{fps, backend, stages_ms, frame_size} of the mirror page at url after its first two
    frames; stages_ms: the camera loop's milliseconds a frame by stage (waiting for the camera,
    grab, steady, network, draw, yield), over the same frames; frame_size: (w, h) it stylized."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.mirror.frames >= 2", timeout=600000, polling=500)
    now = ("[window.mirror.frames, performance.now(), {...window.mirror.stageMs}, window.mirror.backend, "
           "[document.getElementById('output').width, document.getElementById('output').height]]")
    start = page.evaluate(now)
    page.wait_for_function(f"window.mirror.frames >= {start[0] + frames}", timeout=600000, polling=500)
    end = page.evaluate(now)
    page.close()
    count = end[0] - start[0]
    stages = {k: (v - start[2].get(k, 0)) / count for k, v in end[2].items()}
    return {"fps": 1000 * count / (end[1] - start[1]), "backend": end[3], "stages_ms": stages,
            "frame_size": tuple(end[4])}


def page_limit(context, url, width, height, passes=5):
    """This machine's limit for the page's work (web/limit.js): the network's convolutions
    alone at width x height, in the page at url (which loads the model and starts its backend
    as for the camera, but no camera), and the network's milliseconds by kernel."""
    page = context.new_page()
    page.goto(url + "&camera=off")
    page.wait_for_function("window.mirror.net && document.body.dataset.state === 'ready'", timeout=600000,
                           polling=500)
    result = page.evaluate("""async ([h, w, passes]) => {
        const Limit = await import(new URL('limit.js', location.href).href);
        const net = window.mirror.net;
        return {limit: await Limit.convLimit(net, h, w, {passes}),
                profile: await Limit.networkProfile(net, h, w, {passes: Math.max(1, passes - 2)}),
                threads: window.mirror.threads};
    }""", [height, width, passes])
    page.close()
    return result


# A painting's picture dropped on the page with "use as style" ticked, as a user drops it; the
# milliseconds from the drop event to the first camera frame drawn in its style, and on the way:
# when the POST /style's answer had arrived (the browser's resource timing, whatever the page was
# doing), the server's share of it (request sent to the answer's first byte), and when the first
# frame in the new style began. The page handles an event between frames only: a real drop
# waits for the frame in progress before this clock starts.
DROP = """async ([url, name]) => {
  const blob = await (await fetch(url)).blob();
  const data = new DataTransfer();
  data.items.add(new File([blob], `${name}.jpg`, { type: 'image/jpeg' }));
  document.getElementById('use-as-style').checked = true;
  const drop = performance.now();
  document.getElementById('stage').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  while (!window.mirror.lastFrame || window.mirror.lastFrame.model !== name) await new Promise((resolve) => setTimeout(resolve, 2));
  const post = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/style')).pop();
  const { began, at } = window.mirror.lastFrame;
  return { total_ms: at - drop, answer_ms: post.responseEnd - drop, server_ms: post.responseStart - post.requestStart,
           began_ms: began - drop, frame_ms: at - began };
}"""


def drop_to_frame(context, url, paintings):
    """DROP for each of `paintings` (names of the page's shipped ones) in turn, on the page at
    url (on a painting already, so that the transformer is loaded and warm), after its first
    two frames."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.mirror.frames >= 2", timeout=600000, polling=500)
    drops = [page.evaluate(DROP, [f"paintings/{name}.jpg", f"dropped-{i}"]) for i, name in enumerate(paintings)]
    page.close()
    return drops


EDGE_PADS = (0, 16, 48)
DROPS_OF = ("the_scream", "shipwreck_of_the_minotaur", "udnie", "great_wave")
drop_count = number(int, lambda v: 1 <= v <= len(DROPS_OF), f"must be between 1 and {len(DROPS_OF)}")


def bench_mirror(model_dir, width=320, height=240, frames=10, ml5_frames=2, chromium="/usr/bin/chromium",
                 edge_pads=EDGE_PADS, drops_of=DROPS_OF):
    """Frames per second of the mirror page and of ml5.js 0.12.2 (the classic sketch, on its
    only correct backend, WebGL) on the same ml5 model, in the same headless Chromium, with a
    fake camera; and of the page on the lite network (random weights: speed does not depend
    on them), which ml5.js cannot run; of the page with each of `edge_pads` (?edgepad=N:
    the mirrored pixels around each frame) in place of its camera's default; and of the page
    without its steadier (?steady=off). Beside them this machine's limit for the same work
    (page_limit), the page's share of it, and where the page's frame time goes. And a shipped
    painting's (the arbitrary-style network): its frames per second, milliseconds by kernel,
    and the time from dropping each of `drops_of` to its first frame in style (drop_to_frame)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("bench mirror needs Playwright (pip install playwright) and Debian's chromium") from None
    from .. import mirror
    from ..network import TransformNet

    model_dir = Path(model_dir)
    if not (model_dir / "manifest.json").is_file():
        raise UserError(f"{model_dir}: not an ml5 model folder (the benchmark runs it in ml5.js too)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        camera = Image.effect_mandelbrot((width, height), (-2, -1.2, 1, 1.2), 64).convert("RGB")
        write_y4m(tmp / "camera.y4m", camera)
        (tmp / "lite").mkdir()
        formats.save_safetensors(TransformNet.named("lite"), tmp / "lite" / "lite-random.safetensors")
        folders = [model_dir.parent, tmp / "lite"]
        srv = mirror.Mirror(folders).serve(port=0)
        base = f"http://127.0.0.1:{srv.server_address[1]}/"
        found = mirror.find_models(folders)
        name = next(n for n, p in found.items() if p.resolve() == model_dir.resolve())
        lite = next(n for n, p in found.items() if p.name == "lite-random.safetensors")
        args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-video-capture={(tmp / 'camera.y4m').resolve()}"]
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(tmp / "profile", executable_path=chromium,
                                                               headless=True, args=args)
                url = f"{base}?model={name}&size={width}x{height}"
                run = page_fps(context, url, frames)
                limit = page_limit(context, url, *run["frame_size"])
                unsteady_fps = page_fps(context, url + "&steady=off", frames)["fps"]
                lite_fps = page_fps(context, f"{base}?model={lite}&size={width}x{height}", frames)["fps"]
                painting_url = f"{base}?model={mirror.DEFAULT_PAINTING}&size={width}x{height}"
                painting = page_fps(context, painting_url, frames)
                painting_limit = page_limit(context, painting_url, *painting["frame_size"])
                drops = drop_to_frame(context, painting_url, drops_of)
                by_pad = {pad: page_fps(context, f"{url}&edgepad={pad}", frames)["fps"] for pad in edge_pads}
                theirs = ml5_fps(context, f"{base}examples/ml5/?model={name}&size={width}x{height}", ml5_frames)
                context.close()
        finally:
            srv.shutdown()
    ours = run["fps"]
    return {"fps": ours, "ml5_fps": theirs, "speedup": ours / theirs, "backend": run["backend"],
            "ml5_backend": "webgl", "lite_fps": lite_fps, "edge_pad_fps": by_pad,
            "painting": mirror.DEFAULT_PAINTING, **painting_figures(painting, painting_limit, drops, ours),
            "unsteady_fps": unsteady_fps, "steady_cost": unsteady_fps / ours, "lite_vs_standard": lite_fps / ours,
            **limit_figures(run, limit), "size": "x".join(map(str, run["frame_size"])), "model": name,
            "machine": machine()}


def painting_figures(painting, limit, drops, standard_fps):
    """The arbitrary-style network's page run (page_fps) against its limit (page_limit), beside
    the standard network's frames per second, and its drops (drop_to_frame)."""
    return {"painting_fps": painting["fps"], "painting_vs_standard": painting["fps"] / standard_fps,
            "painting_stages_ms": painting["stages_ms"], "painting_network_ms": limit["profile"]["ms"],
            "painting_limit_fps": limit["limit"]["fps"], "painting_conv_gflop": limit["limit"]["flops"] / 1e9,
            "painting_share_of_limit": painting["fps"] / limit["limit"]["fps"],
            "painting_kernels_ms": limit["profile"]["kernels"], "drops": drops,
            "drop_to_frame_s": float(np.median([d["total_ms"] for d in drops])) / 1000}


def ml5_fps(context, url, frames):
    """Frames per second of ml5.js's example page at url (its first frame, which compiles its
    shaders, not counted)."""
    page = context.new_page()
    page.goto(f"{url}&frames={frames + 1}")
    first = page.wait_for_function("window.ml5Frames >= 1 && performance.now()", timeout=900000,
                                   polling=1000).json_value()
    last = page.wait_for_function(f"window.ml5Frames >= {frames + 1} && performance.now()",
                                  timeout=900000, polling=1000).json_value()
    page.close()
    return 1000 * frames / (last - first)


def limit_figures(run, limit):
    """The page's run (page_fps) against the machine's limit (page_limit): the share, and where
    the frame's time goes."""
    conv, profile = limit["limit"], limit["profile"]
    return {"limit_fps": conv["fps"], "share_of_limit": run["fps"] / conv["fps"], "limit_backend": conv["backend"],
            "limit_threads": limit["threads"], "limit_runs_ms": conv["runs"], "conv_gflop": conv["flops"] / 1e9,
            "conv_gflops_per_s": conv["gflopsPerS"], "network_conv_gflop": conv["plainFlops"] / 1e9,
            "convs": conv["convs"], "stages_ms": run["stages_ms"], "network_ms": profile["ms"],
            "kernels_ms": profile["kernels"]}


HELP = "frames per second of the mirror page beside ml5.js 0.12.2, in headless Chromium"


def add_arguments(p):
    p.add_argument("--model", default=str(SHARED / "ml5-models" / "wave"), help="an ml5 model folder")
    p.add_argument("--size", type=frame_size, default="320x240", help="camera frame size WxH")
    p.add_argument("--frames", "--steps", type=positive_int, default=10, help="frames timed")
    p.add_argument("--drops", type=drop_count, default=len(DROPS_OF),
                   help=f"how many shipped paintings to drop on the page, of {', '.join(DROPS_OF)}")
    p.add_argument("--edge-pads", type=non_negative_int, nargs="+", default=list(EDGE_PADS), metavar="N",
                   help="the edge pads (?edgepad=N) the page is timed with")


def run(args) -> dict:
    w, h = args.size
    # A pad given twice is timed once: the figures are keyed by pad.
    result = bench_mirror(args.model, w, h, frames=args.frames, edge_pads=tuple(dict.fromkeys(args.edge_pads)),
                          drops_of=DROPS_OF[:args.drops])
    print(f"mirror page {result['size']}: {result['fps']:.3f} fps ({result['backend']}); ml5.js 0.12.2: "
          f"{result['ml5_fps']:.4f} fps ({result['ml5_backend']}): {result['speedup']:.1f}x; "
          f"lite network {result['lite_fps']:.2f} fps ({result['lite_vs_standard']:.1f}x the standard one; "
          f"ml5.js cannot run it) ({result['machine']}, headless Chromium)")
    print(f"without the steadier (?steady=off): {result['unsteady_fps']:.3f} fps, "
          f"{result['steady_cost']:.2f}x the page's default")
    print(f"this machine's limit for the same work (the network's {len(result['convs'])} convolutions alone, "
          f"{result['conv_gflop']:.2f} GFLOP a frame as stylenet.js runs them, on {result['limit_backend']} with "
          f"{result['limit_threads']} threads, in the same browser): {result['limit_fps']:.3f} fps "
          f"({result['conv_gflops_per_s']:.1f} GFLOP/s); the page runs at {100 * result['share_of_limit']:.0f}% of it")
    stages = result["stages_ms"]
    print(f"a frame's {sum(stages.values()):.0f} ms: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"the network alone ({result['network_ms']:.0f} ms a frame), ms by kernel: " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["kernels_ms"].items() if v >= 0.5))
    print(f"a painting (the arbitrary-style network, {result['painting']}): {result['painting_fps']:.3f} fps, "
          f"{result['painting_vs_standard']:.2f}x the standard network; its {result['painting_conv_gflop']:.2f} GFLOP of "
          f"convolutions alone {result['painting_limit_fps']:.3f} fps: the page runs at "
          f"{100 * result['painting_share_of_limit']:.0f}% of it; the network alone {result['painting_network_ms']:.0f} ms "
          "a frame, ms by kernel: " + ", ".join(f"{k} {v:.1f}" for k, v in result["painting_kernels_ms"].items() if v >= 0.5))
    print(f"a painting dropped on the page to its first frame in that style: {result['drop_to_frame_s']:.2f} s "
          "(median); each: " + "; ".join(
              f"{d['total_ms'] / 1000:.2f} s (POST answered at {d['answer_ms']:.0f} ms, server {d['server_ms']:.0f}; "
              f"the new style's frame {d['began_ms']:.0f}-{d['total_ms']:.0f})" for d in result["drops"]))
    print("the page with N mirrored pixels around each frame (?edgepad=N; the figure above: its default): " + ", ".join(
        f"{pad}: {fps:.3f} fps ({fps / result['ml5_fps']:.1f}x)" for pad, fps in result["edge_pad_fps"].items()))
    return result
