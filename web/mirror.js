// The style mirror: the webcam (or a picture) through a style network, live, in the browser.
import * as Blend from './blend.js';
import { cameraPad, frameDone, networkChanged } from './camera-size.js';
import { $, download, say } from './dom.js';
import * as Kiosk from './kiosk.js';
import { wireRecording } from './record.js';
import * as Painting from './painting.js';
import * as Room from './room.js';
import { state } from './state.js';
import * as StyleNet from './stylenet.js';
import { styleStepper } from './turns.js';
import * as Watch from './watch.js';

const params = new URLSearchParams(location.search);
const video = $('camera'); // plays only where the browser has no ImageCapture
const view = $('camera-view'); // the camera frame being stylized, beside its result
const canvas = $('output');
let kiosk = null; // ?kiosk: kiosk.js's hooks

// For tests and `stylemirror bench mirror`: the page's state, with its entry points, and the network's module.
Object.assign(window, { mirror: Object.assign(state, { setBlend: Blend.setBlend, useModel, stylizePicture, useStylePicture }), StyleNet, Painting });

const PICTURE_HINT = 'You can still stylize a picture: choose one with "picture…" or drop it on the page.';

// --- TensorFlow.js backend: the fastest that really runs here -------------------------

// A software WebGL (SwiftShader, llvmpipe) is far slower than WASM with SIMD.
function softwareGL() {
  try {
    const gl = document.createElement('canvas').getContext('webgl');
    if (!gl) return true;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : '';
    return /swiftshader|llvmpipe|software/i.test(renderer);
  } catch (e) {
    return true;
  }
}

// TF.js's wasm backend gives XNNPACK min(threads asked, logical cores / 2) threads: it
// assumes two hyper-threads per core, so a 2-core machine gets one. Threads need a
// cross-origin isolated page (`stylemirror mirror` sends COOP/COEP headers). We ask for every
// logical core and lift the halving while the backend starts (it reads the count then):
// 1.8x faster on 2 cores (bench/README.md).
async function startWasm() {
  if (!self.crossOriginIsolated) return tf.setBackend('wasm');
  const cores = navigator.hardwareConcurrency || 1;
  tf.wasm.setThreadsCount(cores);
  Object.defineProperty(navigator, 'hardwareConcurrency', { value: 2 * cores, configurable: true });
  try {
    return await tf.setBackend('wasm');
  } finally {
    delete navigator.hardwareConcurrency; // the browser's own value again
  }
}

async function pickBackend() {
  tf.wasm.setWasmPaths(new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
  const wanted = params.get('backend');
  const order = wanted ? [wanted] : softwareGL() ? ['wasm', 'cpu'] : ['webgpu', 'webgl', 'wasm', 'cpu'];
  for (const name of order) {
    try {
      // setBackend resolves false (it does not throw) when a backend cannot start.
      if (await (name === 'wasm' ? startWasm() : tf.setBackend(name))) {
        await tf.ready();
        state.threads = name === 'wasm' ? tf.wasm.getThreadsCount() : null;
        return name;
      }
    } catch (e) {
      console.warn(`backend ${name} failed`, e);
    }
  }
  throw new Error('no TensorFlow.js backend could start in this browser');
}

// --- models -------------------------------------------------------------------------

const NO_MODELS = `No style models yet. Get one, then reload this page:
  • pull one of ml5's published styles (needs the internet once):  stylemirror models pull wave
  • or train your own:  stylemirror train --style painting.jpg --train-path photos/ --checkpoint-dir run/
Models are looked for in ./models, in the folders given to \`stylemirror mirror --models\`, and in the user cache.`;

// {models: [...], settings: {...}}, as mirror.py builds it.
async function loadIndex() {
  const response = await fetch('models/index.json');
  if (!response.ok) throw new Error(`models/index.json: HTTP ${response.status}`);
  return response.json();
}

async function useModel(name) {
  const entry = state.models.find((m) => m.name === name);
  document.body.dataset.state = 'loading-model';
  Watch.stop();
  if (entry.watch && !(await Watch.untilModel(entry))) return false; // another style was chosen meanwhile
  say(`Loading the style "${name}"…`);
  let net;
  try {
    const progress = (f) => say(`Loading the style "${name}"… ${Math.round(100 * f)}%`);
    // A painting runs on the page's one arbitrary-style transformer: only its vector is new.
    net = entry.arch === 'arbitrary' ? await Painting.load(state.arbitrary, entry, progress) : await StyleNet.load(entry.url, progress);
  } catch (e) {
    document.body.dataset.state = 'error';
    say(`Could not load the style "${name}": ${e.message}`);
    return false;
  }
  if (state.net) state.net.dispose();
  state.net = net;
  state.model = name;
  networkChanged();
  Blend.show(net, { onChange: restylePicture }); // a multi-style model's styles and blend control
  $('model-select').value = name;
  const details = [entry.arch !== 'standard' && entry.arch, entry.size && `${(entry.size / 1e6).toFixed(1)} MB`];
  $('keep-style').hidden = !entry.dropped;
  $('style-thumbnail').hidden = !entry.thumbnail;
  if (entry.thumbnail) $('style-thumbnail').src = entry.thumbnail;
  $('model-info').textContent = `${name} (${details.filter(Boolean).join(', ')})`;
  // ml5.js runs ml5 folders only (the standard network, in its own format).
  $('ml5-link').hidden = entry.format !== 'ml5';
  $('ml5-link').querySelector('a').href = `examples/ml5/?model=${encodeURIComponent(name)}`;
  if (!entry.dropped) { // a dropped painting is gone after a reload
    const url = new URL(location.href);
    url.searchParams.set('model', name);
    history.replaceState(null, '', url);
  }
  say('');
  document.body.dataset.state = state.mode === 'image' ? 'image' : 'ready';
  if (kiosk) kiosk.showStyle(entry);
  if (state.pendingPicture) {
    const file = state.pendingPicture;
    state.pendingPicture = null;
    stylizePicture(file);
  } else {
    restylePicture(); // in picture mode, the picture on show in the new style
  }
  if (entry.watch) Watch.follow(entry, swapNetwork);
  return true;
}

// A training run's newer network (watch.js), swapped in without stopping the camera: the
// camera loop reads state.net once a frame, so a frame uses one network or the other, never a
// freed one. A multi-style run keeps the blend in use; other styles than before get new controls.
function swapNetwork(net) {
  const old = state.net;
  const sameStyles = (net.styles || []).join('\n') === (old.styles || []).join('\n');
  if (sameStyles && old.blend) net.setBlend(old.blend);
  state.net = net;
  old.dispose();
  if (!sameStyles) Blend.show(net, { onChange: restylePicture });
}

// --- stylizing ------------------------------------------------------------------------

function strength() {
  return Number($('strength').value);
}

// Pixels mirrored past the edges before the network, so that it paints no frame along them
// (StyleNet.stylize). Pictures get what `stylemirror stylize` gives (index.json's edge_pad),
// so the two agree. The camera gets none by default: a pad that removes the frame costs 1.8x
// the work at 320x240 (bench/README.md). ?edgepad=N sets both (0: off, as ml5.js runs).
function edgePad(source) {
  if (params.has('edgepad')) return Math.max(0, Math.floor(Number(params.get('edgepad')))) || 0;
  return source === 'image' ? state.settings.edge_pad : 0;
}

// HxWx3 pixels -> HxWx3 int32 stylized pixels, blended with the input by the strength.
function stylize(pixels, pad) {
  return tf.tidy(() => {
    const x = pixels.toFloat();
    let y = StyleNet.stylize(state.net, x, pad, state.settings.pad_multiple);
    const s = strength();
    if (s < 1) y = x.add(y.sub(x).mul(s));
    return y.round().toInt();
  });
}

// An HxWx3 int32 picture on the output canvas (sized already): tf.browser.toPixels's pixels,
// 2.7x faster (it builds a JS array per pixel and resizes the canvas on every call).
async function draw(pixels) {
  const [h, w] = pixels.shape;
  const rgba = tf.tidy(() => pixels.pad([[0, 0], [0, 0], [0, 1]], 255));
  const data = new Uint8ClampedArray(await rgba.data());
  rgba.dispose();
  canvas.getContext('2d').putImageData(new ImageData(data, w, h), 0, 0);
}

function resolution() {
  const [w, h] = $('resolution-select').value.split('x').map(Number);
  const { width, height } = state.stream.getVideoTracks()[0].getSettings();
  const aspect = width && height ? width / height : w / h;
  return [Math.round(h * aspect), h];
}

function countFrame() {
  const now = performance.now();
  state.frames += 1;
  state.frameTimes.push(now);
  // Average over the last second, but always over the last two frames at least.
  while (state.frameTimes.length > 2 && now - state.frameTimes[0] > 1000) state.frameTimes.shift();
  const times = state.frameTimes;
  if (times.length >= 2) {
    const fps = (1000 * (times.length - 1)) / (times[times.length - 1] - times[0]);
    $('fps').textContent = `${fps.toFixed(1)} fps`;
  }
}

// Camera frames come from ImageCapture.grabFrame() where the browser has it (Chromium): no
// <video> has to play, which on a 2-core machine takes a quarter of the CPU the network needs
// (bench/README.md), and the next frame is on its way while the network runs on this one.
// Elsewhere they are read from a playing, hidden <video>.
const grabNext = () => state.capture.grabFrame().catch(() => null); // null: the camera went away

// The camera frame scaled to w x h and mirrored, drawn on the camera view, then read from
// there: 3x cheaper than reading the whole frame into a tensor and resizing it there.
const viewContext = view.getContext('2d', { willReadFrequently: true });

function grab(source, w, h) {
  if (view.width !== w || view.height !== h) [view.width, view.height] = [w, h];
  viewContext.setTransform(state.mirrored ? -1 : 1, 0, 0, 1, state.mirrored ? w : 0, 0);
  viewContext.drawImage(source, 0, 0, w, h);
  return tf.browser.fromPixels(view);
}

// The camera frame with its sensor noise steadied, so that a still scene does not shimmer
// (bench/README.md: `bench flicker --steady`), or as it came where "steady" is off.
function steadied(frame) {
  if (!$('steady').checked) {
    forgetSteady();
    return frame;
  }
  const next = StyleNet.steady(state.steadyFrame, frame, state.settings.steady);
  forgetSteady();
  state.steadyFrame = next;
  return next;
}

function forgetSteady() {
  if (state.steadyFrame) state.steadyFrame.dispose();
  state.steadyFrame = null;
}

// The time since `since` added to the camera loop's stage `stage` (state.stageMs); returns now.
function lap(stage, since) {
  const now = performance.now();
  state.stageMs[stage] = (state.stageMs[stage] || 0) + now - since;
  return now;
}

async function cameraLoop() {
  if (state.loopRunning) return;
  state.loopRunning = true;
  let next = state.capture && grabNext();
  try {
    let t = performance.now();
    while (state.mode === 'camera' && state.stream) {
      if (state.styleSwap) await state.styleSwap.catch(() => {}); // its failure is said by the swap itself
      const bitmap = state.capture && (await next);
      if (state.capture) next = grabNext();
      t = lap('camera', t);
      const busySince = t; // the frame's own time, without the camera's or the display's waits: what the size changes
      // A camera being turned (room.js's flip) has no stream until the new one comes: skip.
      if (state.net && state.stream && (state.capture ? bitmap : video.readyState >= 2)) {
        const [w, h] = resolution();
        const model = state.model; // the style this frame is painted in: state.net, read by stylize below
        const frame = grab(bitmap || video, w, h);
        t = lap('grab', t);
        const input = steadied(frame);
        t = lap('steady', t);
        const out = stylize(input, cameraPad(edgePad('camera')));
        frame.dispose();
        t = lap('network', t);
        if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
        await draw(out);
        out.dispose();
        t = lap('draw', t);
        state.lastFrame = { model, began: busySince, at: t };
        countFrame();
        frameDone(t - busySince);
      }
      if (bitmap) bitmap.close();
      await tf.nextFrame();
      t = lap('yield', t);
    }
  } finally {
    state.loopRunning = false;
    forgetSteady();
    if (next) next.then((bitmap) => bitmap && bitmap.close());
  }
}

async function stylizePicture(file) {
  if (!file || !file.type.startsWith('image/')) {
    say(`"${file ? file.name : ''}" is not a picture. ${PICTURE_HINT}`);
    return;
  }
  if (!state.net) {
    const shown = document.body.dataset.state;
    if (shown === 'no-models' || shown === 'error') {
      say(shown === 'no-models' ? NO_MODELS : 'The style could not be loaded: choose another one.');
      return;
    }
    state.pendingPicture = file; // the page is still starting or loading the style
    say(`${file.name} will be stylized as soon as the style has loaded…`);
    return;
  }
  state.mode = 'image';
  state.picture = file;
  document.body.dataset.state = 'image';
  // The camera's fps means nothing for a picture: blank it until the camera runs again.
  $('fps').textContent = '– fps';
  state.frameTimes = [];
  $('camera-button').hidden = !state.stream;
  say(`Stylizing ${file.name}…`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch (e) {
    say(`"${file.name}" could not be read as a picture.`);
    return;
  }
  await tf.nextFrame(); // let the message show before the heavy work
  const pixels = tf.browser.fromPixels(bitmap);
  const out = stylize(pixels, edgePad('image'));
  pixels.dispose();
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  bitmap.close();
  await draw(out);
  out.dispose();
  state.pictures += 1;
  say('');
  document.body.dataset.state = 'image-done';
}

// A picture dropped (or chosen with "use as style") as the style: the server computes its
// vector (POST /style), and the painting runs on the transformer. The camera loop starts no
// frame meanwhile: on wasm a frame holds the page, so each one started would delay the answer's
// handling by a whole frame (bench/README.md: from the drop to the first frame in its style).
function useStylePicture(file) {
  const swap = readStyle(file);
  state.styleSwap = swap;
  return swap.finally(() => {
    if (state.styleSwap === swap) state.styleSwap = null;
  });
}

async function readStyle(file) {
  if (!file || !file.type.startsWith('image/')) {
    say(`"${file ? file.name : ''}" is not a picture: drop a painting's picture to paint in its style.`);
    return false;
  }
  const { style: url, max_bytes: limit } = state.arbitrary;
  if (file.size > limit) {
    say(`"${file.name}" is too large to use as a style (at most ${limit / 1e6} MB).`);
    return false;
  }
  say(`Reading the style of ${file.name}…`);
  let answer;
  try {
    const response = await fetch(url, { method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
  } catch (e) {
    say(`"${file.name}" could not be used as a style: ${e.message}`);
    return false;
  }
  const base = file.name.replace(/\.[^.]*$/, '') || 'painting';
  let name = base;
  for (let n = 2; state.models.some((m) => m.name === name); n++) name = `${base}-${n}`;
  const entry = { name, label: `${name} (dropped)`, format: 'painting', arch: 'arbitrary', style: answer.style,
    thumbnail: URL.createObjectURL(file), dropped: true };
  state.models.push(entry);
  $('model-select').append(new Option(entry.label, entry.name));
  return useModel(name);
}

// "keep this style": the dropped painting as a model file in the server's ./models (POST /keep),
// listed there from the next page load on.
async function keepStyle() {
  const entry = state.models.find((m) => m.name === state.model);
  try {
    const response = await fetch(state.arbitrary.keep, {
      method: 'POST', body: JSON.stringify({ name: entry.name, style: Array.from(entry.style) }),
      headers: { 'Content-Type': 'application/json' },
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    say(`Kept as ${answer.file}.`);
  } catch (e) {
    say(`The style "${entry.name}" could not be kept: ${e.message}`);
  }
}

// A picture chosen or dropped: stylized, or used as the style where "use as style" is ticked.
function usePicture(file) {
  return $('use-as-style').checked ? useStylePicture(file) : stylizePicture(file);
}

// A slider sends many changes while a picture takes a while: one more pass after the one
// running catches them all.
let restyling = null;
async function restylePicture() {
  if (state.mode !== 'image' || !state.picture) return;
  if (restyling) {
    restyling.again = true;
    return;
  }
  restyling = { again: false };
  try {
    do {
      restyling.again = false;
      await stylizePicture(state.picture);
    } while (restyling.again && state.mode === 'image');
  } finally {
    restyling = null;
  }
}

// --- camera ---------------------------------------------------------------------------

function stopCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
}

async function startCamera(deviceId) {
  stopCamera();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(`This browser gives this page no camera access (it needs http://127.0.0.1 or https). ${PICTURE_HINT}`);
    return false;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: { ideal: state.facing }, width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (e) {
    if (e.name === 'NotAllowedError' || e.name === 'SecurityError') {
      say(`Camera permission was denied. Allow the camera for this page (the camera icon in the address bar), then reload. ${PICTURE_HINT}`);
    } else if (e.name === 'NotFoundError' || e.name === 'OverconstrainedError') {
      say(`No camera found. Connect one and reload. ${PICTURE_HINT}`);
    } else if (e.name === 'NotReadableError') {
      say(`The camera is busy: another program is using it. Close that program and reload. ${PICTURE_HINT}`);
    } else {
      say(`The camera could not start (${e.name}: ${e.message}). ${PICTURE_HINT}`);
    }
    document.body.dataset.state = 'no-camera';
    return false;
  }
  const track = state.stream.getVideoTracks()[0];
  // A front camera is shown as a mirror is; a back one as it sees.
  state.mirrored = (track.getSettings().facingMode || state.facing) !== 'environment';
  if (document.body.dataset.state === 'no-camera') { // the camera came back (kiosk.js asks again)
    say('');
    document.body.dataset.state = 'ready';
  }
  state.capture = 'ImageCapture' in window ? new ImageCapture(track) : null;
  video.srcObject = state.capture ? null : state.stream;
  if (!state.capture) await video.play();
  await listCameras(track.getSettings().deviceId);
  state.mode = 'camera';
  cameraLoop();
  return true;
}

async function listCameras(current) {
  const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  const select = $('camera-select');
  select.replaceChildren(...cameras.map((c, i) => new Option(c.label || `camera ${i + 1}`, c.deviceId)));
  select.value = current;
  $('camera-label').hidden = cameras.length < 2;
  Room.showFlip(cameras.length);
}

// --- controls -------------------------------------------------------------------------

function snapshot() {
  canvas.toBlob((blob) => download(blob, state.model || 'frame', 'png'), 'image/png');
}

function toggleView() {
  const stage = $('stage');
  const full = stage.classList.toggle('fullscreen');
  stage.classList.toggle('side-by-side', !full);
  $('view-toggle').textContent = full ? 'fullscreen' : 'side by side';
  if (full && stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
  else if (!full && document.fullscreenElement) document.exitFullscreen();
}

function wireControls() {
  $('model-select').addEventListener('change', (e) => useModel(e.target.value));
  $('camera-select').addEventListener('change', (e) => startCamera(e.target.value));
  $('view-toggle').addEventListener('click', toggleView);
  $('snapshot').addEventListener('click', snapshot);
  $('keep-style').addEventListener('click', keepStyle);
  $('flip-camera').addEventListener('click', () => Room.flipCamera(startCamera));
  Room.wireFold();
  wireRecording();
  $('image-input').addEventListener('change', (e) => usePicture(e.target.files[0]));
  $('camera-button').addEventListener('click', () => {
    $('camera-button').hidden = true;
    state.mode = 'camera';
    document.body.dataset.state = 'ready';
    cameraLoop();
  });
  const stage = $('stage');
  stage.addEventListener('dragover', (e) => { e.preventDefault(); stage.classList.add('dragging'); });
  stage.addEventListener('dragleave', () => stage.classList.remove('dragging'));
  stage.addEventListener('drop', (e) => {
    e.preventDefault();
    stage.classList.remove('dragging');
    usePicture(e.dataTransfer.files[0]);
  });
}

async function main() {
  const step = styleStepper(useModel);
  if (params.has('kiosk')) kiosk = Kiosk.start({ cycle: Kiosk.cycleSeconds(params), step });
  Room.wireGestures($('stage'), { onSwipe: step, onTap: kiosk ? () => kiosk.turn(1) : snapshot });
  wireControls();
  if (params.get('steady') === 'off') $('steady').checked = false;
  const size = params.get('size');
  if (size && [...$('resolution-select').options].some((o) => o.value === size)) $('resolution-select').value = size;
  try {
    state.backend = await pickBackend();
  } catch (e) {
    say(e.message);
    document.body.dataset.state = 'error';
    return;
  }
  $('backend').textContent = state.threads > 1 ? `${state.backend} (${state.threads} threads)` : state.backend;
  try {
    ({ models: state.models, settings: state.settings, arbitrary: state.arbitrary } = await loadIndex());
  } catch (e) {
    say(`The model list could not be loaded (${e.message}). Is \`stylemirror mirror\` still running?`);
    document.body.dataset.state = 'error';
    return;
  }
  $('model-select').replaceChildren(...state.models.map((m) => new Option(m.label || m.name, m.name)));
  if (state.models.some((m) => m.watch)) Watch.keepLabels();
  if (!state.models.length) {
    say(NO_MODELS);
    document.body.dataset.state = 'no-models';
    return;
  }
  const wanted = params.get('model');
  const known = state.models.some((m) => m.name === wanted);
  const loaded = await useModel(known ? wanted : state.models[0].name);
  if (wanted && !known) {
    say(`There is no style named "${wanted}"; showing "${state.models[0].name}" instead. ` +
        `Available: ${state.models.map((m) => m.name).join(', ')}.`);
  }
  if (loaded && params.get('camera') !== 'off') await (kiosk ? kiosk.keepCamera(startCamera) : startCamera());
}

main();
