"""On a GPU, Stylizer runs the network in fp16 (autocast): the same path forced on the CPU gives
pictures within 2 levels of fp32 (the issue's bar), on a published model where one is here."""

import numpy as np
import pytest
import torch

from helpers import SHARED, photo
from stylemirror import formats
from stylemirror.network import TransformNet
from stylemirror.stylize import Options, Stylizer


def test_half_precision_is_only_for_the_gpu_torch_engine():
    net = TransformNet.named("lite")
    assert not Stylizer(net, "cpu").half and not Stylizer(net, "cpu", engine="torch").half


@pytest.mark.parametrize("edge_pad", [0, 16])
def test_fp16_frames_are_within_two_levels_of_fp32(edge_pad):
    wave = SHARED / "ml5-models" / "wave"
    if (wave / "manifest.json").exists():
        net = formats.read_model(wave)
    else:
        torch.manual_seed(0)
        net = TransformNet.named("standard")
    frame = np.asarray(photo((96, 72)))
    fp32 = Stylizer(net, "cpu", Options(edge_pad=edge_pad), engine="torch")
    half = Stylizer(net, "cpu", Options(edge_pad=edge_pad), engine="torch")
    half.half = True  # what a CUDA device sets; CPU autocast runs the same fp16 graph
    want, got = fp32.frames([frame])[0], half.frames([frame])[0]
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
    assert not np.array_equal(got, want)  # it did run in fp16
