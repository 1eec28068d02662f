// Any painting as a style: Magenta's arbitrary-style transformer (arbitrary.js), loaded once
// a page from the weights `stylemirror mirror` serves, with a painting's style vector set on
// it. Switching between paintings sets another vector (each norm's scale and shift): the
// network itself is never loaded again. A painting's vector comes inline in its index.json
// entry ("style": the shipped paintings, a picture dropped on the page) or from its model file
// (`stylemirror style PAINTING`: the tensor "style").
import * as Arbitrary from './arbitrary.js';
import { readTensors } from './stylenet.js';

const { STYLE_DIM } = Arbitrary;

let transformer = null; // a promise of the page's one transformer
export const counts = { loads: 0 }; // transformers loaded so far (tests: one a page)

function theTransformer(url, format, onProgress) {
  if (!transformer) {
    transformer = readTensors(url, format, onProgress).then(({ tensors }) => {
      counts.loads += 1;
      return Arbitrary.fromTensors(tensors);
    });
    transformer.catch(() => { transformer = null; }); // the next painting tries again
  }
  return transformer;
}

async function styleOf(entry) {
  if (entry.style) return entry.style;
  const { tensors } = await readTensors(entry.url);
  const style = tensors.style;
  if (!style || style.shape.join() !== String(STYLE_DIM)) {
    throw new Error(`${entry.url}: not a painting's style file (no style vector of ${STYLE_DIM} numbers)`);
  }
  return style.data;
}

// What the page asks of a network (apply, styles, dispose), painting on the shared transformer.
class Painting {
  constructor(net, vector) {
    this.net = net;
    this.vector = vector;
    this.styles = [];
  }

  apply(image) {
    return this.net.apply(image);
  }

  // StyleNet.convList notes the transformer's convolutions here (the conv-only limit, limit.js).
  get trace() {
    return this.net.trace;
  }

  set trace(list) {
    this.net.trace = list;
  }

  dispose() {} // the transformer stays, for the next painting
}

// urls: index.json's "arbitrary" ({weights, format, ...}: mirror.py's); entry: a model entry of arch "arbitrary".
// The transformer runs the painting's style from here on.
export async function load(urls, entry, onProgress = () => {}) {
  const [net, vector] = await Promise.all([theTransformer(urls.weights, urls.format, onProgress), styleOf(entry)]);
  net.setStyle(vector);
  return new Painting(net, vector);
}
