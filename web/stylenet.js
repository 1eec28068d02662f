// The style network in TensorFlow.js. Reads two formats:
//   - ml5's folder (manifest.json and one raw float32 file per variable: 49 requests), and
//   - the mirror's own format: one .safetensors file as `stylemirror train` and `export` write
//     it (one request; any width and number of residual blocks, e.g. `--arch lite`).
// Runs ml5's forward pass with TensorFlow's 'same' padding; the output has the input's size
// (ml5 rounds odd sizes up; we crop). A multi-style safetensors file (conditional instance
// norm: one scale and shift per style, every conv shared) runs a blend of its styles:
// net.styles names them, net.setBlend(weights) picks one or mixes them.
const SAFETENSORS_FORMAT = 'stylemirror-transformnet-v1';

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${what}: the server could not be reached (${e.message})`);
  }
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status}`);
  return response;
}

// A network is {conv1, conv2, conv3, res: [[a, b], ...], up1, up2, conv4}, each layer
// {weight, shift, scale}; conv weights HWIO [k, k, in, out], transposed convs [k, k, out, in].
function assemble(layers, blocks, styles = []) {
  const res = [];
  for (let i = 0; i < blocks; i++) res.push([layers[`res.${i}.conv1`], layers[`res.${i}.conv2`]]);
  return new Net({ ...layers, res }, styles);
}

// --- ml5's folder: 16 conv layers x (weight, shift, scale) = Variable ... Variable_47 -----
const ML5_LAYERS = ['conv1', 'conv2', 'conv3',
  ...[0, 1, 2, 3, 4].flatMap((i) => [`res.${i}.conv1`, `res.${i}.conv2`]), 'up1', 'up2', 'conv4'];
const ml5Name = (i) => (i === 0 ? 'Variable' : `Variable_${i}`);

// baseUrl ends with '/'. onProgress(fraction) is called as variables arrive.
async function loadMl5(baseUrl, onProgress) {
  const manifest = await (await fetchOk(`${baseUrl}manifest.json`, 'manifest.json')).json();
  const count = 3 * ML5_LAYERS.length;
  const variables = new Array(count).fill(null);
  let arrived = 0;
  // allSettled, not all: every fetch has finished before we report, so a failure is
  // neither overwritten by late progress nor leaks the tensors that arrive after it.
  const results = await Promise.allSettled(variables.map(async (_, i) => {
    const entry = manifest[ml5Name(i)];
    if (!entry || !entry.filename || !Array.isArray(entry.shape)) {
      throw new Error(`manifest.json has no valid ${ml5Name(i)}`);
    }
    const buffer = await (await fetchOk(baseUrl + entry.filename, entry.filename)).arrayBuffer();
    const expected = 4 * entry.shape.reduce((a, b) => a * b, 1);
    if (buffer.byteLength !== expected) {
      throw new Error(`${entry.filename}: ${buffer.byteLength} bytes, expected ${expected}`);
    }
    const values = new Float32Array(buffer);
    // NaN or infinity (a diverged training) would paint black: refused, as `stylize` does.
    if (!values.every(Number.isFinite)) throw new Error(`${entry.filename} holds NaN or infinite values`);
    variables[i] = tf.tensor(values, entry.shape, 'float32');
    onProgress(++arrived / count);
  }));
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) {
    variables.forEach((t) => t && t.dispose());
    throw failure.reason;
  }
  const layers = {};
  ML5_LAYERS.forEach((name, j) => {
    layers[name] = { weight: variables[3 * j], shift: variables[3 * j + 1], scale: variables[3 * j + 2] };
  });
  return assemble(layers, 5);
}

// --- the mirror's format: a safetensors file of the PyTorch TransformNet -----------------
async function readAll(response, onProgress) {
  const total = Number(response.headers.get('Content-Length')) || 0;
  if (!total || !response.body) return response.arrayBuffer();
  const bytes = new Uint8Array(total);
  const reader = response.body.getReader();
  let offset = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (offset + value.length > total) throw new Error('more bytes arrived than announced');
    bytes.set(value, offset);
    offset += value.length;
    onProgress(offset / total);
  }
  if (offset !== total) throw new Error(`the download stopped at ${offset} of ${total} bytes`);
  return bytes.buffer;
}

// Layout: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets}, __metadata__}, then the tensors' bytes. Its metadata's format must be `format`.
function parseSafetensors(buffer, file, format = SAFETENSORS_FORMAT) {
  const fail = (why) => { throw new Error(`${file}: ${why}`); };
  if (buffer.byteLength < 8) fail('too short to be a safetensors file');
  const headerLength = Number(new DataView(buffer).getBigUint64(0, true));
  if (headerLength > buffer.byteLength - 8) fail('not a safetensors file (its header runs past the end)');
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLength)));
  } catch (e) {
    fail('not a safetensors file (its header is not JSON)');
  }
  const meta = header.__metadata__ || {};
  if (meta.format !== format) fail(`not a stylemirror model (format "${meta.format}")`);
  const start = 8 + headerLength;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') fail(`${name} is ${info.dtype}; the mirror reads float32 only`);
    const [begin, end] = info.data_offsets;
    const size = 4 * info.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== size || start + end > buffer.byteLength) fail(`${name} has the wrong size`);
    // slice() copies, so the data need not be 4-byte aligned in the file.
    const data = new Float32Array(buffer.slice(start + begin, start + end));
    if (!data.every(Number.isFinite)) fail(`${name} holds NaN or infinite values`);
    tensors[name] = { shape: info.shape, data };
  }
  return { tensors, meta };
}

// {tensors: {name: {shape, data}}, meta} of the safetensors file at url (painting.js reads
// the arbitrary-style transformer and paintings' style files with it).
export async function readTensors(url, format = SAFETENSORS_FORMAT, onProgress = () => {}) {
  const file = decodeURIComponent(url.split('/').pop());
  return parseSafetensors(await readAll(await fetchOk(url, file), onProgress), file, format);
}

// A multi-style file's style names, from its metadata's "styles" records.
function styleNames(meta, file) {
  if (!meta.styles) return [];
  try {
    return JSON.parse(meta.styles).map((record) => String(record.name));
  } catch (e) {
    throw new Error(`${file}: its "styles" metadata is damaged`);
  }
}

// bytes: the file's contents where the caller has them already (watch.js fetches in a worker).
async function loadSafetensors(url, onProgress, bytes) {
  const file = decodeURIComponent(url.split('/').pop());
  const { tensors, meta } = parseSafetensors(bytes || await readAll(await fetchOk(url, file), onProgress), file);
  const styles = styleNames(meta, file);
  const names = ['conv1', 'conv2', 'conv3', 'up1', 'up2', 'conv4'];
  let blocks = 0;
  while (`res.${blocks}.conv1.conv.weight` in tensors) names.push(`res.${blocks}.conv1`, `res.${blocks++}.conv2`);
  for (const name of names) {
    for (const key of ['conv.weight', 'norm.shift', 'norm.scale']) {
      const t = tensors[`${name}.${key}`];
      if (!t) throw new Error(`${file}: ${name}.${key} is missing`);
      // Norms: [channels], or [styles, channels] in a multi-style file.
      const dims = key === 'conv.weight' ? 4 : styles.length ? 2 : 1;
      if (t.shape.length !== dims || (dims === 2 && t.shape[0] !== styles.length)) {
        throw new Error(`${file}: ${name}.${key} has shape [${t.shape}]`);
      }
    }
  }
  const tensor = (key) => tf.tensor(tensors[key].data, tensors[key].shape, 'float32');
  const layers = {};
  for (const name of names) {
    layers[name] = {
      // PyTorch's Conv2d [out, in, k, k] and ConvTranspose2d [in, out, k, k] both take
      // this permutation to TF.js's layouts.
      weight: tf.tidy(() => tensor(`${name}.conv.weight`).transpose([2, 3, 1, 0])),
      shift: tensor(`${name}.norm.shift`),
      scale: tensor(`${name}.norm.scale`),
    };
  }
  return assemble(layers, blocks, styles);
}

// url: an ml5 folder (ends with '/') or a .safetensors file.
export async function load(url, onProgress = () => {}, bytes = null) {
  return url.endsWith('.safetensors') ? loadSafetensors(url, onProgress, bytes) : loadMl5(url, onProgress);
}

// The decoder works on images held as their 2x2 phases: an HxW image of c channels as an
// (H/2)x(W/2) grid of 4c channels ordered (row phase, column phase, channel), as
// tf.spaceToDepth orders them. Two convolutions become faster there on TF.js's wasm backend:
//
// - A stride-2 transposed conv ('same': output 2H x 2W) is one 2x2 conv whose channels are
//   the output's phases. 3x3 (ml5's published models): over its input padded by one
//   row/column at the top/left; output row 2m takes kernel row 0 from input row m and kernel
//   row 2 from row m - 1, row 2m + 1 takes kernel row 1 from row m. 4x4 (ours, grid-free):
//   over its input padded by one on every side, giving (H+1)x(W+1) positions; phase r of
//   output row m is position m + r, which takes kernel rows 3 - r and 1 - r from input rows
//   m - 1 + r and m + r (columns alike). The wasm backend runs conv2dTranspose in a plain
//   loop, 5x slower than this conv, which goes to XNNPACK.
// - The last 9x9 conv to 3 channels is a 5x5 conv from the phases of its input to the
//   phases of its output (12 channels, which XNNPACK runs 1.6x faster than 3).
//
// TAPS[kernel][phase][offset]: the kernel row that output phase `phase` takes at offset 0
// or 1 of the 2x2 conv (-1: none).
const TAPS = { 3: [[2, 0], [-1, 1]], 4: [[3, 1], [2, 0]] };

// Transposed-conv weights [k, k, out, in] (k = 3 or 4) -> the 2x2 phase conv's [2, 2, in, 4 * out].
function upsamplingKernel(w) {
  const [k, , cout, cin] = w.shape;
  if (!TAPS[k]) throw new Error(`a ${k}x${k} transposed convolution: only 3x3 and 4x4 are known`);
  const src = w.dataSync();
  const dst = new Float32Array(2 * 2 * cin * 4 * cout);
  for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) for (let ry = 0; ry < 2; ry++) for (let rx = 0; rx < 2; rx++) {
    const [ky, kx] = [TAPS[k][ry][a], TAPS[k][rx][b]];
    if (ky < 0 || kx < 0) continue;
    for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) {
      dst[((a * 2 + b) * cin + i) * 4 * cout + (ry * 2 + rx) * cout + o] = src[((ky * k + kx) * cout + o) * cin + i];
    }
  }
  return tf.tensor(dst, [2, 2, cin, 4 * cout]);
}

// Stride-1 conv weights [k, k, in, out] (k odd, 'same') -> the phase conv's
// [K, K, 4 * in, 4 * out]: output phase s takes input phase p at phase-grid offset d
// through kernel tap 2d + p - s, where that lies within the kernel.
function phaseKernel(w) {
  const [k, , cin, cout] = w.shape;
  const r = (k - 1) / 2;
  const R = Math.floor((r + 1) / 2);
  const K = 2 * R + 1;
  const src = w.dataSync();
  const dst = new Float32Array(K * K * 4 * cin * 4 * cout);
  for (let dy = -R; dy <= R; dy++) for (let dx = -R; dx <= R; dx++) for (let p = 0; p < 4; p++) for (let s = 0; s < 4; s++) {
    const ty = 2 * dy + (p >> 1) - (s >> 1);
    const tx = 2 * dx + (p & 1) - (s & 1);
    if (Math.abs(ty) > r || Math.abs(tx) > r) continue;
    for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) {
      dst[(((dy + R) * K + dx + R) * 4 * cin + p * cin + i) * 4 * cout + s * cout + o] =
        src[(((ty + r) * k + tx + r) * cin + i) * cout + o];
    }
  }
  return tf.tensor(dst, [K, K, 4 * cin, 4 * cout]);
}

// x * a + b per channel (a, b: [c]), then ReLU where `relu`, as a depthwise 1x1 conv: one XNNPACK
// pass, 5x faster on wasm than broadcasting, the same numbers. b must be a kernel's [c] output,
// not a reshape: the wasm kernel checks the rank its data was made with.
export function affine(x, a, b, relu) {
  return tf.fused.depthwiseConv2d({ x, filter: a.reshape([1, 1, x.shape[2], 1]), strides: 1, pad: 'valid',
    bias: b, activation: relu ? 'relu' : 'linear' });
}

// Per-channel mean and population variance over H, W of [h, w, c], as [c]. On wasm as average
// pools, which XNNPACK reads in place: tf.mean there transposes the tensor first (10x slower,
// bench/README.md). On a GPU a frame-sized pool runs on few threads: tf.moments there.
export function moments(x) {
  const [h, w, c] = x.shape;
  if (tf.getBackend() !== 'wasm') return tf.moments(x, [0, 1]);
  const pool = (t) => tf.avgPool(t, [h, w], 1, 'valid').reshape([c]);
  const mean = pool(x);
  const d = affine(x, tf.ones([c]), mean.neg(), false);  // x - mean, as tf.moments computes it
  return { mean, variance: pool(d.mul(d)) };  // d * d: square's numbers, 2x faster on wasm
}

// What convList notes of a convolution x -> y: its input, kernel, stride and padding, its FLOPs
// as run, and `plain`: those of the layer it stands for (null: the same).
export function convNote(x, weight, stride, pad, y, plain = null) {
  const flops = 2 * y.shape[0] * y.shape[1] * weight.shape.reduce((a, b) => a * b, 1);
  return { input: x.shape, weight, stride, pad, output: y.shape, flops, plain: plain ?? flops };
}

// Phases [h, w, 4c] -> the image [2h, 2w, c].
function interleave(y) {
  const [h, w, c4] = y.shape;
  return y.reshape([h, w, 2, 2, c4 / 4]).transpose([0, 2, 1, 3, 4]).reshape([2 * h, 2 * w, c4 / 4]);
}

class Net {
  // styles: a multi-style network's style names, whose layers' scale and shift are
  // [styles, channels] (their blend is computed by setBlend); [] for one style.
  constructor(layers, styles = []) {
    const replace = (layer, weight) => {
      const plainShape = layer.weight.shape;  // the layer's own kernel, for convList's FLOPs
      layer.weight.dispose();
      return { ...layer, weight, plainShape };
    };
    this.upSize = layers.up1.weight.shape[0];  // 3 or 4: which phase conv `up` runs
    layers.up1 = replace(layers.up1, upsamplingKernel(layers.up1.weight));
    layers.up2 = replace(layers.up2, upsamplingKernel(layers.up2.weight));
    layers.conv4 = replace(layers.conv4, phaseKernel(layers.conv4.weight));
    this.layers = layers;
    this.all = [layers.conv1, layers.conv2, layers.conv3, ...layers.res.flat(), layers.up1, layers.up2, layers.conv4];
    this.tensors = this.all.flatMap((l) => [l.weight, l.shift, l.scale]);
    this.styles = styles;
    this.blend = null; // the weights over `styles` in use, summing to 1
    if (styles.length) {
      for (const layer of this.all) [layer.styleScale, layer.styleShift] = [layer.scale, layer.shift];
      this.setBlend(styles.map((_, i) => (i === 0 ? 1 : 0)));
    }
  }

  // A style selection of a multi-style network: weights (0 or more, not all 0) over its
  // styles, normalised to sum 1; each norm's scale and shift become that combination of
  // the styles' own (one-hot: one style), as `stylemirror stylize --style a:0.7,b:0.3` does.
  setBlend(weights) {
    const total = weights.reduce((a, b) => a + b, 0);
    if (weights.length !== this.styles.length || weights.some((w) => !(w >= 0 && w < Infinity)) || !(total > 0)) {
      throw new Error(`a blend needs ${this.styles.length} weights of 0 or more, not all 0 (got [${weights}])`);
    }
    this.blend = weights.map((w) => w / total);
    tf.tidy(() => {
      const w = tf.tensor(this.blend, [1, this.blend.length]);
      for (const layer of this.all) {
        if (layer.scale !== layer.styleScale) tf.dispose([layer.scale, layer.shift]);
        layer.scale = tf.keep(tf.matMul(w, layer.styleScale).reshape([-1]));
        layer.shift = tf.keep(tf.matMul(w, layer.styleShift).reshape([-1]));
      }
    });
  }

  // Instance norm: per-channel mean and population variance over H, W; eps 1e-3. Folded
  // into one multiply-add per pixel: a = scale / sqrt(var + eps), b = shift - mean * a; then
  // the ReLU where `relu`.
  norm(x, layer, relu = false) {
    const { mean, variance } = moments(x);
    const a = tf.rsqrt(variance.add(1e-3)).mul(layer.scale);
    return affine(x, a, layer.shift.sub(mean.mul(a)), relu);
  }

  // The same on phases: the statistics cover all four (viewed as 4w columns of c channels).
  phaseNorm(y, layer, relu = false) {
    const [h, w, c4] = y.shape;
    return this.norm(y.reshape([h, 4 * w, c4 / 4]), layer, relu).reshape(y.shape);
  }

  // Every convolution of apply goes through here; while this.trace is an array (convList) each
  // is noted (convNote; `plain`: a transposed or full-size conv where it runs on phases).
  conv2d(x, weight, stride, pad, plain = null) {
    const y = tf.conv2d(x, weight, stride, pad);
    if (this.trace) this.trace.push(convNote(x, weight, stride, pad, y, plain));
    return y;
  }

  conv(x, layer, stride, relu = true) {
    return this.norm(this.conv2d(x, layer.weight, stride, 'same'), layer, relu);
  }

  // Transposed conv + norm + ReLU: [h, w, in] -> the phases of [2h, 2w, out].
  up(x, layer) {
    const [h, w] = x.shape;
    const plain = 2 * h * w * layer.plainShape.reduce((a, b) => a * b, 1);  // as PyTorch counts a transposed conv
    // The zero rows and columns as the conv's own padding: no padded copy of x.
    let y;
    if (this.upSize === 3) {
      y = this.conv2d(x, layer.weight, 1, [[0, 0], [1, 0], [1, 0], [0, 0]], plain);
    } else {
      const c = layer.weight.shape[3] / 4;
      const all = this.conv2d(x, layer.weight, 1, [[0, 0], [1, 1], [1, 1], [0, 0]], plain);  // (h+1) x (w+1)
      y = tf.concat([0, 1, 2, 3].map((p) => all.slice([p >> 1, p & 1, p * c], [h, w, c])), 2);
    }
    return this.phaseNorm(y, layer, true);
  }

  // image: HxWx3 tensor in 0..255 -> HxWx3 float32 in 0..255. Call inside tf.tidy.
  apply(image) {
    const [h, w] = image.shape;
    const L = this.layers;
    let y = this.conv(this.conv(this.conv(image.toFloat(), L.conv1, 1), L.conv2, 2), L.conv3, 2);
    for (const [a, b] of L.res) y = y.add(this.conv(this.conv(y, a, 1), b, 1, false));
    y = this.up(interleave(this.up(y, L.up1)), L.up2);
    const plain = 8 * y.shape[0] * y.shape[1] * L.conv4.plainShape.reduce((a, b) => a * b, 1);  // at full size
    y = this.phaseNorm(this.conv2d(y, L.conv4.weight, 1, 'same', plain), L.conv4);
    return interleave(y.tanh().mul(150).add(127.5).clipByValue(0, 255)).slice([0, 0, 0], [h, w, 3]);
  }

  dispose() {
    if (this.styles.length) this.all.forEach((l) => tf.dispose([l.scale, l.shift]));
    this.tensors.forEach((t) => t.dispose());
  }
}

// Zero padding in the network's convolutions paints a coloured frame along the edges: run
// it on the image mirrored past every edge and crop the frame away with the reflection
// (stylemirror's Stylizer does the same, in reflect_pad). sides: [[top, bottom], [left,
// right]]. A reflection adds at most size - 1 pixels, so an image smaller than the pad is
// reflected again; a single row or column is repeated.
function reflectPad(x, sides) {
  for (const axis of [0, 1]) {
    let [before, after] = sides[axis];
    while (before > 0 || after > 0) {
      const size = x.shape[axis];
      const steps = [before, after].map((n) => Math.min(n, size - 1) || n);
      const paddings = axis === 0 ? [steps, [0, 0], [0, 0]] : [[0, 0], steps, [0, 0]];
      const copies = steps[0] + steps[1] + 1; // a single row or column: repeated
      x = size > 1 ? tf.mirrorPad(x, paddings, 'reflect') : tf.tile(x, axis === 0 ? [copies, 1, 1] : [1, copies, 1]);
      before -= steps[0];
      after -= steps[1];
    }
  }
  return x;
}

// net.apply on an HxWx3 image with `pad` mirrored pixels around it (0: none, as ml5.js
// runs), and more at the bottom and right, so that the padded size is a `multiple` (index.json's
// pad_multiple): at other sizes the stride-2 convs' grid starts 1-3 pixels off, and the whole
// output with it (padding.edge_padding). HxWx3 float32 in 0..255. Call inside tf.tidy.
export function stylize(net, image, pad, multiple) {
  const [h, w] = image.shape;
  pad = Math.min(pad, h, w);  // past the shorter side a reflection only repeats (padding.bounded)
  if (!pad) return net.apply(image);
  const rest = (size) => (multiple - ((size + 2 * pad) % multiple)) % multiple;
  const sides = [[pad, pad + rest(h)], [pad, pad + rest(w)]];
  return net.apply(reflectPad(image.toFloat(), sides)).slice([pad, pad, 0], [h, w, 3]);
}

// The convolutions stylize(net, an h x w frame, pad, multiple) runs, in order, as Net.conv2d
// notes them: the work of the conv-only limit (limit.js).
export function convList(net, h, w, pad = 0, multiple = 1) {
  net.trace = [];
  try {
    tf.tidy(() => stylize(net, tf.zeros([h, w, 3]), pad, multiple));
    return net.trace;
  } finally {
    net.trace = null;
  }
}

// A camera's sensor noise out of its frames, as `stylemirror stylize` does to videos
// (stylize.Steadier, which says why): each pixel follows a running average while it changes
// by no more than noise would, and the new frame where something moves. previous: the last
// steadied frame (HxWx3 float32, or null), frame: the next one, settings: Steadier's
// {follow, quiet, loud} (index.json's steady); returns the steadied frame, a new tensor (the
// caller keeps it for the next call and disposes the old one).
export function steady(previous, frame, { follow, quiet, loud }) {
  return tf.tidy(() => {
    const x = frame.toFloat();
    if (!previous || previous.shape.join() !== x.shape.join()) return x.clone();
    const change = x.sub(previous);
    const share = change.abs().max(2, true).sub(quiet).div(loud - quiet).clipByValue(0, 1);
    return previous.add(change.mul(share.mul(1 - follow).add(follow)));
  });
}
