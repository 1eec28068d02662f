// This machine's limit for the mirror's work, for `stylemirror bench mirror`: the network's
// convolutions alone, as stylenet.js runs them on an h x w frame, on the backend the page
// started; and where the network's own time goes, kernel by kernel. Timed by the wall clock:
// TF.js's wasm and cpu backends run each kernel before the call returns.
import * as StyleNet from './stylenet.js';

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

// Each pass runs every convolution of the network once, on inputs of their shapes (random:
// the speed does not depend on the values) and the network's own kernels. The first pass
// warms up (XNNPACK packs each kernel on its first use).
export async function convLimit(net, h, w, { passes = 5, pad = 0, multiple = 1 } = {}) {
  const convs = StyleNet.convList(net, h, w, pad, multiple);
  const inputs = convs.map((c) => tf.randomUniform(c.input, 0, 1));
  const each = convs.map(() => []);
  const total = [];
  for (let pass = 0; pass <= passes; pass++) {
    const start = performance.now();
    for (const [i, c] of convs.entries()) {
      const t = performance.now();
      const y = tf.conv2d(inputs[i], c.weight, c.stride, c.pad);
      if (i === convs.length - 1) await y.data(); // a backend that queues kernels has run them all
      y.dispose();
      if (pass) each[i].push(performance.now() - t);
    }
    if (pass) total.push(performance.now() - start);
  }
  tf.dispose(inputs);
  const ms = median(total);
  const flops = convs.reduce((a, c) => a + c.flops, 0);
  return {
    ms, runs: total, fps: 1000 / ms, flops, plainFlops: convs.reduce((a, c) => a + c.plain, 0),
    gflopsPerS: flops / ms / 1e6, backend: tf.getBackend(),
    convs: convs.map((c, i) => ({ input: c.input, kernel: c.weight.shape, stride: c.stride, pad: c.pad,
      flops: c.flops, plain: c.plain, ms: median(each[i]) })),
  };
}

// Milliseconds by kernel name (median over passes) of StyleNet.stylize on a random h x w frame,
// as the page calls it, after one pass of warm-up.
export async function networkProfile(net, h, w, { passes = 3, pad = 0, multiple = 1 } = {}) {
  const frame = tf.randomUniform([h, w, 3], 0, 255);
  const byName = {};
  const total = [];
  for (let pass = 0; pass <= passes; pass++) {
    const start = performance.now();
    const info = await tf.profile(() => tf.tidy(() => StyleNet.stylize(net, frame, pad, multiple)));
    const ms = performance.now() - start;
    info.result.dispose();
    if (!pass) continue;
    total.push(ms);
    const sums = {};
    // A custom-gradient op (name__op) is recorded around the kernel it runs: counted once, as that kernel.
    for (const k of info.kernels.filter((k) => !k.name.endsWith('__op'))) sums[k.name] = (sums[k.name] || 0) + k.kernelTimeMs;
    for (const [name, t] of Object.entries(sums)) (byName[name] = byName[name] || []).push(t);
  }
  frame.dispose();
  const kernels = Object.fromEntries(Object.entries(byName).map(([name, t]) => [name, median(t)])
    .sort((a, b) => b[1] - a[1]));
  return { ms: median(total), kernels };
}
