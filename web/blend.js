// The styles of a multi-style model (`stylemirror train --style a.jpg --style b.jpg ...`): a
// button per style, and a slider per style whose weights blend them, live on the camera (the
// next frame runs the new blend). ?style=NAME or ?style=a:0.7,b:0.3 (as `stylemirror stylize
// --style` takes it) starts there. Tests set a blend with window.mirror.setBlend({a: 0.7, b: 0.3}).
import { $, say } from './dom.js';
import { state } from './state.js';

const panel = $('styles-panel');
let changed = () => {}; // show's onChange: the blend in use changed

// {name: weight} -> the weights in net.styles' order; names it does not hold are refused.
function weightsOf(net, blend) {
  const unknown = Object.keys(blend).filter((name) => !net.styles.includes(name));
  if (unknown.length) {
    throw new Error(`no style ${unknown.map((n) => `"${n}"`).join(', ')} in this model (its styles: ${net.styles.join(', ')})`);
  }
  return net.styles.map((name) => Number(blend[name] || 0));
}

// The buttons (and, unless a slider is being moved, the sliders) show the blend in use.
function sync(net, sliders = true) {
  net.styles.forEach((name, i) => {
    const weight = net.blend[i];
    panel.querySelector(`button[data-index="${i}"]`).setAttribute('aria-pressed', String(weight === 1));
    if (sliders) panel.querySelector(`input[data-index="${i}"]`).value = String(weight);
  });
  state.blend = Object.fromEntries(net.styles.map((name, i) => [name, net.blend[i]]));
}

// The network on show (state.net) runs `blend`, {name: weight}.
export function setBlend(blend, fromSliders = false) {
  const net = state.net;
  if (!net || !net.styles.length) throw new Error('this model holds one style: there is nothing to blend');
  net.setBlend(weightsOf(net, blend));
  sync(net, !fromSliders);
  changed();
}

// "a" or "a:0.7,b:0.3" -> {name: weight}
function parse(text) {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length === 1 && !parts[0].includes(':')) return { [parts[0]]: 1 };
  return Object.fromEntries(parts.map((p) => {
    const at = p.lastIndexOf(':');
    return [p.slice(0, at), Number(p.slice(at + 1))];
  }));
}

// Called with each newly loaded network: a panel for a multi-style one, none otherwise.
// onChange() is called whenever the blend in use changes.
export function show(net, { onChange = () => {} } = {}) {
  changed = onChange;
  state.blend = null;
  panel.replaceChildren();
  panel.hidden = !net.styles.length;
  if (!net.styles.length) return;
  net.styles.forEach((name, i) => {
    const group = document.createElement('span');
    group.className = 'style';
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = name;
    button.dataset.index = String(i);
    button.addEventListener('click', () => setBlend({ [name]: 1 }));
    const slider = document.createElement('input');
    slider.type = 'range';
    Object.assign(slider, { min: '0', max: '1', step: '0.05' });
    slider.dataset.index = String(i);
    slider.setAttribute('aria-label', `weight of ${name}`);
    // Sliders set the weights, normalised; all at 0 would be no style: that one stays up.
    slider.addEventListener('input', () => {
      const weights = [...panel.querySelectorAll('input')].map((s) => Number(s.value));
      if (!weights.some((w) => w > 0)) weights[i] = 0.05;
      setBlend(Object.fromEntries(net.styles.map((n, j) => [n, weights[j]])), true);
    });
    group.append(button, slider);
    panel.append(group);
  });
  sync(net);
  const wanted = new URLSearchParams(location.search).get('style');
  if (wanted) {
    try {
      setBlend(parse(wanted));
    } catch (e) {
      say(`?style=${wanted}: ${e.message}`);
    }
  }
}
