// The style network in TensorFlow.js: reads ml5's model format (a folder with manifest.json
// and one raw float32 file per variable) and runs ml5's forward pass, with TensorFlow's
// 'same' padding. Output has the input's size (ml5 rounds odd sizes up; we crop).
'use strict';

const StyleNet = (() => {
  const VARIABLES = 48;
  const variableName = (i) => (i === 0 ? 'Variable' : `Variable_${i}`);

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

  // baseUrl ends with '/'. onProgress(fraction) is called as variables arrive.
  async function load(baseUrl, onProgress = () => {}) {
    const manifest = await (await fetchOk(`${baseUrl}manifest.json`, 'manifest.json')).json();
    const variables = new Array(VARIABLES).fill(null);
    let arrived = 0;
    // allSettled, not all: every fetch has finished before we report, so a failure is
    // neither overwritten by late progress nor leaks the tensors that arrive after it.
    const results = await Promise.allSettled(variables.map(async (_, i) => {
      const entry = manifest[variableName(i)];
      if (!entry || !entry.filename || !Array.isArray(entry.shape)) {
        throw new Error(`manifest.json has no valid ${variableName(i)}`);
      }
      const buffer = await (await fetchOk(baseUrl + entry.filename, entry.filename)).arrayBuffer();
      const expected = 4 * entry.shape.reduce((a, b) => a * b, 1);
      if (buffer.byteLength !== expected) {
        throw new Error(`${entry.filename}: ${buffer.byteLength} bytes, expected ${expected}`);
      }
      variables[i] = tf.tensor(new Float32Array(buffer), entry.shape, 'float32');
      onProgress(++arrived / VARIABLES);
    }));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) {
      variables.forEach((t) => t && t.dispose());
      throw failure.reason;
    }
    return new Net(variables);
  }

  class Net {
    constructor(variables) {
      this.v = variables;
    }

    // Instance norm: per-channel mean and population variance over H, W; eps 1e-3.
    // Variables: conv weight at id, shift at id + 1, scale at id + 2.
    norm(x, id) {
      const { mean, variance } = tf.moments(x, [0, 1], true);
      return x.sub(mean).mul(tf.rsqrt(variance.add(1e-3))).mul(this.v[id + 2]).add(this.v[id + 1]);
    }

    conv(x, id, stride, relu = true) {
      const y = this.norm(tf.conv2d(x, this.v[id], stride, 'same'), id);
      return relu ? tf.relu(y) : y;
    }

    up(x, id) {
      const [h, w] = x.shape;
      const channels = this.v[id].shape[2];
      return tf.relu(this.norm(tf.conv2dTranspose(x, this.v[id], [2 * h, 2 * w, channels], 2, 'same'), id));
    }

    // image: HxWx3 tensor in 0..255 -> HxWx3 float32 in 0..255. Call inside tf.tidy.
    apply(image) {
      const [h, w] = image.shape;
      let y = this.conv(this.conv(this.conv(image.toFloat(), 0, 1), 3, 2), 6, 2);
      for (let id = 9; id < 39; id += 6) y = y.add(this.conv(this.conv(y, id, 1), id + 3, 1, false));
      y = this.conv(this.up(this.up(y, 39), 42), 45, 1, false);
      return y.tanh().mul(150).add(127.5).clipByValue(0, 255).slice([0, 0, 0], [h, w, 3]);
    }

    dispose() {
      this.v.forEach((t) => t.dispose());
    }
  }

  return { load };
})();
