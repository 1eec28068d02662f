// Magenta's arbitrary-style transformer (Ghiasi et al. 2017) in TensorFlow.js: the same
// network as stylemirror's arbitrary.ArbitraryNet, which says what each layer is. Reflect
// padding before every conv, conditional instance norm (eps 1e-5) whose scale and shift come
// from a 100-number style vector, sigmoid output; any picture size (odd sizes are cropped
// at the bottom/right). Weights: ArbitraryNet's state dict, PyTorch's names and layouts.
// The norms run as stylenet.js's do (moments, affine: fast on wasm).
import { affine, convNote, moments } from './stylenet.js';

export const STYLE_DIM = 100; // numbers in a style vector (arbitrary.STYLE_DIM)
const EPS = 1e-5;

// tensors: {name: {shape, data}} of ArbitraryNet.state_dict().
export function fromTensors(tensors) {
  return new ArbitraryNet(tensors);
}

class ArbitraryNet {
  constructor(tensors) {
    const get = (name) => {
      const t = tensors[name];
      if (!t) throw new Error(`the arbitrary-style network's ${name} is missing`);
      return tf.tensor(t.data, t.shape, 'float32');
    };
    // PyTorch's Conv2d [out, in, k, k] -> TF.js's [k, k, in, out].
    const conv = (name, bias = false) => ({
      weight: tf.tidy(() => get(`${name}.weight`).transpose([2, 3, 1, 0])),
      bias: bias ? get(`${name}.bias`) : null,
    });
    // Linear [channels, 100] and [channels]: the style vector's map to a norm's scale or shift.
    const linear = (name) => ({ weight: get(`${name}.weight`), bias: get(`${name}.bias`) });
    const layer = (name) => ({
      conv: conv(`${name}.conv.conv`),
      norm: { toScale: linear(`${name}.norm.scale`), toShift: linear(`${name}.norm.shift`), scale: null, shift: null },
    });
    this.contract = [0, 1, 2].map((i) => conv(`contract.${i}.conv`, true));
    this.res = [0, 1, 2, 3, 4].map((i) => [layer(`res.${i}.conv1`), layer(`res.${i}.conv2`)]);
    [this.up1, this.up2, this.out] = ['up1', 'up2', 'out'].map(layer);
    this.layers = [...this.res.flat(), this.up1, this.up2, this.out];
  }

  // Fixes the style: each norm's scale and shift from the vector (100 numbers), once.
  setStyle(vector) {
    if (vector.length !== STYLE_DIM) throw new Error(`a style vector has ${STYLE_DIM} numbers, not ${vector.length}`);
    tf.tidy(() => {
      const v = tf.tensor(Array.from(vector), [STYLE_DIM, 1]);
      const map = ({ weight, bias }) => tf.keep(weight.matMul(v).reshape([-1]).add(bias));
      for (const { norm } of this.layers) {
        tf.dispose([norm.scale, norm.shift]);
        [norm.scale, norm.shift] = [map(norm.toScale), map(norm.toShift)];
      }
    });
  }

  // A bias (the contracting convs) comes fused with the ReLU where `relu`: one pass.
  conv(x, { weight, bias }, stride = 1, relu = false) {
    const p = (weight.shape[0] - 1) / 2;
    const padded = tf.mirrorPad(x, [[p, p], [p, p], [0, 0]], 'reflect');
    const y = bias ? tf.fused.conv2d({ x: padded, filter: weight, strides: stride, pad: 'valid', bias, activation: relu ? 'relu' : 'linear' })
      : tf.conv2d(padded, weight, stride, 'valid');
    if (this.trace) this.trace.push(convNote(padded, weight, stride, 'valid', y)); // StyleNet.convList's
    return y;
  }

  // Instance norm folded into one multiply-add: a = scale / sqrt(var + eps), b = shift - mean * a;
  // then the ReLU where `relu`.
  convNorm(x, { conv, norm }, relu = false) {
    const y = this.conv(x, conv);
    const { mean, variance } = moments(y);
    const a = tf.rsqrt(variance.add(EPS)).mul(norm.scale);
    return affine(y, a, norm.shift.sub(mean.mul(a)), relu);
  }

  // Nearest-neighbour 2x: every pixel becomes a 2x2 block (tiling a reshape took ~70x longer on wasm).
  upsample(x) {
    const [h, w] = x.shape;
    return tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w]);
  }

  // image: HxWx3 in 0..255 -> HxWx3 float32 in 0..255, in the style setStyle fixed. Call
  // inside tf.tidy.
  apply(image) {
    if (!this.out.norm.scale) throw new Error('no style yet: call setStyle(vector) first');
    const [h, w] = image.shape;
    let y = image.toFloat().div(255);
    y = this.contract.reduce((x, layer, i) => this.conv(x, layer, i ? 2 : 1, true), y);
    for (const [a, b] of this.res) y = y.add(this.convNorm(this.convNorm(y, a, true), b));
    y = this.convNorm(this.upsample(y), this.up1, true);
    y = this.convNorm(this.upsample(y), this.up2, true);
    return tf.sigmoid(this.convNorm(y, this.out)).mul(255).slice([0, 0, 0], [h, w, 3]);
  }

  dispose() {
    for (const { norm } of this.layers) tf.dispose([norm.scale, norm.shift]);
    const all = [...this.contract, ...this.layers.flatMap(({ conv, norm }) => [conv, norm.toScale, norm.toShift])];
    all.forEach(({ weight, bias }) => tf.dispose([weight, bias].filter(Boolean)));
  }
}
