// Watching a training run (`stylemirror mirror --watch DIR`, `stylemirror train --mirror`): the
// page follows the newest network the run has written and shows how the training goes.
// It hands each newer network to its caller (follow's onNetwork), which puts it on show.
import { $, say } from './dom.js';
import { state } from './state.js';
import * as StyleNet from './stylenet.js';

// A poll of a small JSON, not server-sent events: the server answers each request whole and
// at once (no connection held open per page), a poll needs no reconnecting after the server or
// the laptop slept, and twice a second keeps a new network well inside 2 s of landing.
const POLL_MS = 500; // before the first network; then watch-worker.js polls as often
let session = 0; // a new one whenever the page starts or stops following a run
let poller = null; // the worker that polls the run followed

async function latest(entry) {
  const response = await fetch(entry.watch, { cache: 'no-store' });
  if (!response.ok) throw new Error(`${entry.watch}: HTTP ${response.status}`);
  return response.json();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The run's newest network, as latest.json names it, becomes its entry in the style list.
const adopt = (entry, now) => Object.assign(entry, { url: now.model, step: now.step, arch: now.arch, size: now.size });

// Before loading a run's network: ask for its newest (the one the list named may be gone: a
// run keeps its last two), and before its first has landed, wait, saying so. False when
// another style was chosen meanwhile.
export async function untilModel(entry) {
  const mine = session;
  for (;;) {
    try {
      const now = await latest(entry);
      if (mine !== session) return false;
      if (now.model) {
        adopt(entry, now);
        return true;
      }
      say(`Waiting for the training run "${entry.name}" to write its first network…`);
    } catch (e) {
      if (mine !== session) return false;
      if (entry.url) return true; // the server did not answer: try the network listed
      say(`Waiting for the training run "${entry.name}" (${e.message})…`);
    }
    await sleep(POLL_MS);
    if (mine !== session) return false;
  }
}

// The runs not on show keep their place in the style list current ("b (training, step 40)"):
// a slow poll of each, beside the worker that follows the one on show.
const LABELS_MS = 2000;
const option = (name) => [...$('model-select').options].find((o) => o.value === name);

export function keepLabels() {
  setInterval(() => {
    state.models.filter((m) => m.watch && !(poller && m.name === state.model)).forEach((entry) => {
      latest(entry).then((now) => {
        const listed = option(now.name);
        if (listed) listed.textContent = now.label;
      }, () => {}); // the server restarting: the next poll says
    });
  }, LABELS_MS);
}

export function stop() {
  session += 1;
  if (poller) poller.terminate();
  poller = null;
  $('watch-panel').hidden = true;
  ['watch-step', 'watch-epoch', 'watch-speed', 'watch-eta'].forEach((id) => { $(id).textContent = ''; });
  plot([]);
  state.watch = null;
}

const seconds = (s) => (s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
  : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`);

// The losses on a log scale, each scaled to its own range: their sizes differ by orders of
// magnitude, and what a user reads here is whether each still falls.
const COLORS = {
  total: '#f5b041', content: '#5dade2', style: '#af7ac5', tv: '#7f8c8d', grid: '#58d68d', stability: '#ec7063',
};

function plot(rows) {
  const canvas = $('watch-losses');
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  if (rows.length < 2) return;
  const steps = rows.map((r) => r.step);
  const x = (step) => 4 + ((w - 8) * (step - steps[0])) / (steps[steps.length - 1] - steps[0] || 1);
  Object.entries(COLORS).forEach(([key, color], i) => {
    const points = rows.filter((r) => r[key] > 0).map((r) => [r.step, Math.log(r[key])]);
    if (points.length < 2) return;
    const logs = points.map((p) => p[1]);
    const [lo, hi] = [Math.min(...logs), Math.max(...logs)];
    const y = (v) => h - 4 - ((h - 20) * (v - lo)) / (hi - lo || 1); // the top 16 px: the legend
    ctx.strokeStyle = color;
    ctx.lineWidth = key === 'total' ? 2 : 1;
    ctx.beginPath();
    points.forEach(([s, v], j) => (j ? ctx.lineTo(x(s), y(v)) : ctx.moveTo(x(s), y(v))));
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.fillText(key, 6 + 52 * i, 12);
  });
}

function show(now) {
  $('watch-panel').hidden = false;
  const total = now.total_steps ? ` of ${now.total_steps}` : '';
  $('watch-step').textContent = now.step === null ? 'waiting' : `${now.state}, step ${now.step}${total}`;
  $('watch-epoch').textContent = now.epoch != null ? `${now.epoch.toFixed(2)} epochs` : '';
  $('watch-speed').textContent = now.images_per_s ? `${now.images_per_s.toFixed(1)} images/s` : '';
  const eta = { finished: 'done', stopped: 'rerun its train command to resume' }[now.state];
  $('watch-eta').textContent = eta || (now.eta_s != null ? `ETA ${seconds(now.eta_s)}` : '');
  plot(now.losses || []);
  const listed = option(now.name);
  if (listed) listed.textContent = now.label;
}

// After the page has loaded the run's network: a worker polls (watch-worker.js says why there)
// and brings each newer network's bytes; each is built whole and handed to onNetwork(net),
// which swaps it in without stopping the camera.
export function follow(entry, onNetwork) {
  const mine = session;
  state.watch = { step: entry.step, loaded_at: Date.now() };
  poller = new Worker('watch-worker.js');
  poller.onmessage = async ({ data: { now, bytes, error } }) => {
    if (mine !== session) return;
    if (error) {
      console.warn('watch:', error);
      return;
    }
    show(now);
    if (!bytes) return;
    let net;
    try {
      net = await StyleNet.load(now.model, undefined, bytes);
    } catch (e) {
      console.warn('watch:', e.message);
      return;
    }
    if (mine !== session) {
      net.dispose();
      return;
    }
    onNetwork(net);
    adopt(entry, now);
    state.watch = { step: now.step, loaded_at: Date.now() };
  };
  poller.postMessage({ latest: new URL(entry.watch, location.href).href, base: location.href, step: entry.step });
}
