"""TransformNet against a float64 reference written from the ml5/TensorFlow definitions."""

import math

import numpy as np
import pytest
import torch

from helpers import photo, random_net
from stylemirror.metrics import grid_score
from stylemirror.network import DECODERS, ENCODERS, InferenceNet, TransformNet, same_pad_stride2


def tf_same_pads(n, k, s):
    """TensorFlow 'same': output ceil(n/s); the odd extra padding goes after."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def ref_conv(x, w, stride):
    """x: (C, H, W); w: HWIO [k, k, in, out]; TF 'same' padding; float64."""
    k = w.shape[0]
    (t, b), (l, r) = tf_same_pads(x.shape[1], k, stride), tf_same_pads(x.shape[2], k, stride)
    xp = np.pad(x, ((0, 0), (t, b), (l, r)))
    oh, ow = math.ceil(x.shape[1] / stride), math.ceil(x.shape[2] / stride)
    out = np.zeros((w.shape[3], oh, ow))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("chw,co->ohw", patch, w[i, j])
    return out


def ref_conv_transpose(x, w):
    """The adjoint of a stride-2 TF 'same' conv whose input is 2x the size of x.
    w: [k, k, out, in] as TensorFlow's conv2d_transpose takes it."""
    k = w.shape[0]
    oh, ow = 2 * x.shape[1], 2 * x.shape[2]
    t, l = tf_same_pads(oh, k, 2)[0], tf_same_pads(ow, k, 2)[0]
    out = np.zeros((w.shape[2], oh + k + 2, ow + k + 2))
    for i in range(k):
        for j in range(k):
            contrib = np.einsum("chw,oc->ohw", x, w[i, j])
            out[:, i:i + 2 * x.shape[1]:2, j:j + 2 * x.shape[2]:2] += contrib
    return out[:, t:t + oh, l:l + ow]


def ref_instance_norm(x, shift, scale):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return scale[:, None, None] * (x - mean) / np.sqrt(var + 1e-3) + shift[:, None, None]


def ref_forward(variables, image):
    """ml5's transferInternal, line by line, on an (H, W, 3) image in 0..255."""
    v = iter(variables)

    def conv(x, stride, relu=True):
        y = ref_instance_norm(ref_conv(x, next(v), stride), next(v), next(v))
        return np.maximum(y, 0) if relu else y

    def up(x):
        return np.maximum(ref_instance_norm(ref_conv_transpose(x, next(v)), next(v), next(v)), 0)

    x = image.transpose(2, 0, 1).astype(np.float64)
    x = conv(conv(conv(x, 1), 2), 2)
    for _ in range(5):
        x = x + conv(conv(x, 1), 1, relu=False)
    y = conv(up(up(x)), 1, relu=False)
    return np.clip(150 * np.tanh(y) + 127.5, 0, 255).transpose(1, 2, 0)


def ml5_variables(net):
    from stylemirror.formats import _to_ml5, ml5_layout
    state = net.plain().state_dict()
    return [_to_ml5(state[k]).astype(np.float64) for k in ml5_layout(net)]


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("h,w", [(16, 16), (13, 10), (9, 15), (6, 7), (3, 2)])
def test_matches_float64_reference(h, w, decoder, encoder):
    net = random_net(seed=h * w, decoder=decoder, encoder=encoder)
    image = np.random.default_rng(1).uniform(0, 255, (h, w, 3))
    want = ref_forward(ml5_variables(net), image)
    with torch.no_grad():
        got = net(torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32))[0].permute(1, 2, 0).numpy()
    # ml5 returns a multiple of 4 for odd sizes; its top-left part is the picture.
    assert want.shape[0] >= h and want.shape[1] >= w
    np.testing.assert_allclose(got, want[:h, :w], atol=0.05)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (2, 3), (5, 5), (31, 17), (64, 48)])
def test_output_size_equals_input_size(h, w):
    with torch.no_grad():
        y = TransformNet()(torch.rand(2, 3, h, w) * 255)
    assert y.shape == (2, 3, h, w)
    assert 0 <= y.min() and y.max() <= 255


@pytest.mark.parametrize("encoder,e", [("conv3", 3), ("conv5", 5), ("blur", 5)])
@pytest.mark.parametrize("decoder,k", [("deconv3", 3), ("deconv4", 4), ("resize", 4)])
def test_layer_shapes_are_ml5s(decoder, k, encoder, e):
    shapes = [list(v.shape) for v in ml5_variables(TransformNet(decoder=decoder, encoder=encoder))]
    assert len(shapes) == 48
    assert shapes[0] == [9, 9, 3, 32] and shapes[3] == [e, e, 32, 64] and shapes[6] == [e, e, 64, 128]
    assert shapes[39] == [k, k, 64, 128] and shapes[42] == [k, k, 32, 64] and shapes[45] == [9, 9, 32, 3]
    assert all(shapes[i] == [3, 3, 128, 128] for i in range(9, 39, 3))


def test_resize_decoder_is_nearest_upsampling_then_a_3x3_conv():
    """What the decoder computes, written the plain way (pytorch/examples' UpsampleConvLayer)."""
    import torch.nn.functional as F

    net = random_net(seed=2).double()
    x = torch.rand(2, 128, 7, 5, dtype=torch.float64)
    layer = net.up1
    want = F.relu(layer.norm(F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), layer.conv.weight, padding=1)))
    torch.testing.assert_close(layer(x), want)
    image = torch.rand(1, 3, 21, 18) * 255
    with torch.no_grad():
        assert (net.float()(image) - net.plain()(image)).abs().max() < 0.01


def test_blur_encoder_is_a_3x3_conv_blurred_then_every_other_pixel():
    """What the encoder computes, written the plain way (Zhang 2019's anti-aliased
    downsampling): the 3x3 conv at every pixel, blurred by [1, 2, 1] x [1, 2, 1] / 16, then
    every other pixel, the one TF 'same' centres each output on (2m + 1 for an even size, 2m
    for an odd one). Inside the picture (the two ways pad its edges apart)."""
    import torch.nn.functional as F

    net = random_net(seed=4).double()
    layer = net.conv2
    blur = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    blur = (blur[:, None] * blur[None, :] / 16).expand(64, 1, 3, 3)
    for h, w in ((20, 16), (19, 17)):
        x = torch.rand(2, 32, h, w, dtype=torch.float64)
        full = F.conv2d(F.conv2d(x, layer.conv.weight, padding=1), blur, padding=1, groups=64)
        want = full[..., 1 - h % 2::2, 1 - w % 2::2]
        got = F.conv2d(same_pad_stride2(x, 5), layer.kernel(), stride=2)
        assert got.shape == (2, 64, (h + 1) // 2, (w + 1) // 2)
        torch.testing.assert_close(got[..., 2:-2, 2:-2], want[..., 2:-2, 2:-2])
        torch.testing.assert_close(layer(x), F.relu(layer.norm(got)))
    image = torch.rand(1, 3, 21, 18) * 255
    with torch.no_grad():  # stored as the plain 5x5 conv it is
        assert net.float().plain().encoder == "conv5" and (net.float()(image) - net.plain()(image)).abs().max() < 0.01


def test_resize_decoder_paints_no_grid():
    """Untrained, on a photo: the 3x3 transposed conv's uneven overlap paints a periodic grid;
    the resize decoder's even overlap does not (Odena et al. 2016)."""
    x = torch.from_numpy(np.array(photo((128, 128)))).permute(2, 0, 1)[None].float()
    for seed in range(3):
        scores = {}
        for decoder in ("deconv3", "resize"):
            torch.manual_seed(seed)
            net = TransformNet(decoder=decoder)
            # The decoder's grid alone: at the output norm's old scale of 1 (the new start, 0.5,
            # narrows both networks' output and the margin between them: 2.4x on seed 0).
            torch.nn.init.constant_(net.conv4.norm.scale, 1.0)
            with torch.no_grad():
                scores[decoder] = grid_score(net(x)[0].permute(1, 2, 0).numpy())
        assert scores["deconv3"] > 3 * scores["resize"], scores


def multiply_adds(net, h=64, w=64) -> int:
    """Multiply-adds of every convolution (transposed ones included) at h x w."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        # A conv computes each output pixel from k*k taps; a transposed conv scatters each
        # input pixel through k*k taps.
        spatial = output if isinstance(module, torch.nn.Conv2d) else inputs[0]
        k = module.kernel_size[0] * module.kernel_size[1]
        total += spatial.shape[-2] * spatial.shape[-1] * k * module.in_channels * module.out_channels

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        net(torch.rand(1, 3, h, w))
    for hook in hooks:
        hook.remove()
    return total


def test_lite_network_is_much_lighter_and_keeps_sizes():
    lite, standard = TransformNet.named("lite", "deconv4"), TransformNet.named("standard", "deconv4")
    assert (lite.arch, standard.arch, TransformNet((8, 8, 8), 1).arch) == ("lite", "standard", "custom")
    ratio = multiply_adds(standard) / multiply_adds(lite)
    assert 4.0 < ratio < 5.5, ratio
    for h, w in [(37, 29), (1, 1), (64, 48)]:
        assert lite(torch.rand(1, 3, h, w) * 255).shape == (1, 3, h, w)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("arch", ["standard", "lite"])
def test_inference_form_computes_the_same_function(arch, decoder):
    """The decoder on phases (what ONNX exports and the page run) equals the plain network."""
    net = random_net(seed=1, arch=arch, decoder=decoder)
    with torch.no_grad():
        fast = InferenceNet(net)
        for shape in [(1, 3, 37, 29), (2, 3, 64, 48), (1, 3, 1, 1), (1, 3, 2, 3)]:
            x = torch.rand(*shape) * 255
            want, got = net(x), fast(x)
            assert got.shape == want.shape
            assert (got - want).abs().max() < 0.01, shape  # float rounding only: a hundredth of a level


@pytest.mark.parametrize("styles", [1, 3])
def test_a_new_network_starts_within_a_photos_levels(styles):
    """The last norm starts at scale OUTPUT_NORM_SCALE (0.5): its unit-variance output through
    150 tanh(0.5 z) + 127.5 is clipped at 0 only where z < -2.5 (0.6% of pixels; at scale 1,
    where z < -1.26: 10%), with a spread of about 60 levels, a photo's."""
    from stylemirror.network import OUTPUT_NORM_SCALE

    torch.manual_seed(0)
    net = TransformNet(styles=styles)
    assert torch.all(net.conv4.norm.scale == OUTPUT_NORM_SCALE) and torch.all(net.up2.norm.scale == 1)
    x = torch.rand(2, 3, 96, 96) * 255
    with torch.no_grad():
        y = net(x, None if styles == 1 else torch.eye(styles)[0])
    clipped = ((y == 0) | (y == 255)).float().mean().item()
    assert clipped < 0.02 and 45 < y.std().item() < 80, (clipped, y.std().item())
