"""`stylemirror bench ...`: measured figures, each beside a plain reference from the same run.
One module per benchmark, its plain reference beside it, its flags (`add_arguments`) and its
report (`run`, which prints it and returns the figures); what they share is in common."""

from .common import CHROMIUM_ARGS, SKIMAGE_PHOTOS, machine, sync, timed_in_turns, write_skimage_photos
from .data import bench_data, coco_like_jpegs
from .mirror import bench_mirror, page_fps, write_y4m
from .quality import QUALITY_LAYERS, quality_styles, style_score  # bench.quality stays the module (cli's)
from .stylize import bench_stylize
from .train import PEAK_BF16_TFLOPS, STEP_VARIANTS, ReferenceVGG19, bench_e2e, bench_train, peak_tflops, random_vgg_weights, reference_step

__all__ = ["CHROMIUM_ARGS", "PEAK_BF16_TFLOPS", "QUALITY_LAYERS", "SKIMAGE_PHOTOS", "STEP_VARIANTS", "ReferenceVGG19",
           "bench_data", "bench_e2e", "bench_mirror", "bench_stylize", "bench_train", "coco_like_jpegs", "machine", "page_fps",
           "peak_tflops", "quality_styles", "random_vgg_weights", "reference_step", "style_score", "sync", "timed_in_turns",
           "write_skimage_photos", "write_y4m"]
