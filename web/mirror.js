// The style mirror: the webcam (or a picture) through a style network, live, in the browser.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const video = $('camera'); // plays only where the browser has no ImageCapture
const view = $('camera-view'); // the camera frame being stylized, beside its result
const canvas = $('output');

// Everything the page knows, in one place (tests read it too).
const mirror = {
  backend: null,
  threads: null, // wasm's threads
  net: null,
  model: null,
  models: [],
  stream: null,
  capture: null, // ImageCapture of the camera's track, where the browser has it
  mode: 'camera', // or 'image'
  pendingPicture: null, // a picture chosen while the style was loading: stylized once it is ready
  picture: null, // the picture on show in picture mode: stylized again when the style or blend changes
  pictures: 0, // pictures stylized so far
  frames: 0,
  frameTimes: [],
  loopRunning: false,
  watch: null, // a training run's network on show: {step, loaded_at (ms since 1970)} (watch.js)
  blend: null, // a multi-style model's weights in use, {style: weight} (blend.js; setBlend sets them)
  steadyFrame: null, // the camera's last frame with its noise steadied (StyleNet.steady), kept for the next
};
window.mirror = mirror;

function say(text) {
  $('message').textContent = text || '';
  $('message').hidden = !text;
}

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
        mirror.threads = name === 'wasm' ? tf.wasm.getThreadsCount() : null;
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

async function loadIndex() {
  const response = await fetch('models/index.json');
  if (!response.ok) throw new Error(`models/index.json: HTTP ${response.status}`);
  return (await response.json()).models;
}

async function useModel(name) {
  const entry = mirror.models.find((m) => m.name === name);
  document.body.dataset.state = 'loading-model';
  Watch.stop();
  if (entry.watch && !(await Watch.untilModel(entry))) return false; // another style was chosen meanwhile
  say(`Loading the style "${name}"…`);
  let net;
  try {
    net = await StyleNet.load(entry.url, (f) => say(`Loading the style "${name}"… ${Math.round(100 * f)}%`));
  } catch (e) {
    document.body.dataset.state = 'error';
    say(`Could not load the style "${name}": ${e.message}`);
    return false;
  }
  if (mirror.net) mirror.net.dispose();
  mirror.net = net;
  mirror.model = name;
  Blend.show(net); // a multi-style model's styles and blend control
  $('model-select').value = name;
  const details = [entry.arch !== 'standard' && entry.arch, `${(entry.size / 1e6).toFixed(1)} MB`];
  $('model-info').textContent = `${name} (${details.filter(Boolean).join(', ')})`;
  // ml5.js runs ml5 folders only (the standard network, in its own format).
  $('ml5-link').hidden = entry.format !== 'ml5';
  $('ml5-link').querySelector('a').href = `examples/ml5/?model=${encodeURIComponent(name)}`;
  const url = new URL(location.href);
  url.searchParams.set('model', name);
  history.replaceState(null, '', url);
  say('');
  document.body.dataset.state = mirror.mode === 'image' ? 'image' : 'ready';
  if (mirror.pendingPicture) {
    const file = mirror.pendingPicture;
    mirror.pendingPicture = null;
    stylizePicture(file);
  } else {
    restylePicture(); // in picture mode, the picture on show in the new style
  }
  if (entry.watch) Watch.follow(entry);
  return true;
}

// --- stylizing ------------------------------------------------------------------------

function strength() {
  return Number($('strength').value);
}

// Pixels mirrored past the edges before the network, so that it paints no frame along them
// (StyleNet.stylize). Pictures get what `stylemirror stylize` gives (its --edge-pad default),
// so the two agree. The camera gets none by default: a pad that removes the frame (48) costs
// 1.8x the work at 320x240 and one of 16, which barely helps, 1.25x, either taking the page
// below 20x ml5.js's frame rate (bench/README.md). ?edgepad=N sets both (0: off, as ml5.js runs).
const EDGE_PAD = { image: 48, camera: 0 };
if (params.has('edgepad')) EDGE_PAD.image = EDGE_PAD.camera = Math.max(0, Math.floor(Number(params.get('edgepad')))) || 0;

// HxWx3 pixels -> HxWx3 int32 stylized pixels, blended with the input by the strength.
function stylize(pixels, pad) {
  return tf.tidy(() => {
    const x = pixels.toFloat();
    let y = StyleNet.stylize(mirror.net, x, pad);
    const s = strength();
    if (s < 1) y = x.add(y.sub(x).mul(s));
    return y.round().toInt();
  });
}

function resolution() {
  const [w, h] = $('resolution-select').value.split('x').map(Number);
  const { width, height } = mirror.stream.getVideoTracks()[0].getSettings();
  const aspect = width && height ? width / height : w / h;
  return [Math.round(h * aspect), h];
}

function countFrame() {
  const now = performance.now();
  mirror.frames += 1;
  mirror.frameTimes.push(now);
  // Average over the last second, but always over the last two frames at least.
  while (mirror.frameTimes.length > 2 && now - mirror.frameTimes[0] > 1000) mirror.frameTimes.shift();
  const times = mirror.frameTimes;
  if (times.length >= 2) {
    const fps = (1000 * (times.length - 1)) / (times[times.length - 1] - times[0]);
    $('fps').textContent = `${fps.toFixed(1)} fps`;
  }
}

// Camera frames come from ImageCapture.grabFrame() where the browser has it (Chromium): no
// <video> has to play, which on a 2-core machine takes a quarter of the CPU the network needs
// (bench/README.md), and the next frame is on its way while the network runs on this one.
// Elsewhere they are read from a playing, hidden <video>.
const grabNext = () => mirror.capture.grabFrame().catch(() => null); // null: the camera went away

// The camera frame scaled to w x h and mirrored, drawn on the camera view, then read from
// there: 3x cheaper than reading the whole frame into a tensor and resizing it there.
const viewContext = view.getContext('2d', { willReadFrequently: true });

function grab(source, w, h) {
  if (view.width !== w || view.height !== h) [view.width, view.height] = [w, h];
  viewContext.setTransform(-1, 0, 0, 1, w, 0);
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
  const next = StyleNet.steady(mirror.steadyFrame, frame);
  forgetSteady();
  mirror.steadyFrame = next;
  return next;
}

function forgetSteady() {
  if (mirror.steadyFrame) mirror.steadyFrame.dispose();
  mirror.steadyFrame = null;
}

async function cameraLoop() {
  if (mirror.loopRunning) return;
  mirror.loopRunning = true;
  let next = mirror.capture && grabNext();
  try {
    while (mirror.mode === 'camera' && mirror.stream) {
      const bitmap = mirror.capture && (await next);
      if (mirror.capture) next = grabNext();
      if (mirror.net && (mirror.capture ? bitmap : video.readyState >= 2)) {
        const [w, h] = resolution();
        const frame = grab(bitmap || video, w, h);
        const out = stylize(steadied(frame), EDGE_PAD.camera);
        frame.dispose();
        if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
        await tf.browser.toPixels(out, canvas);
        out.dispose();
        countFrame();
      }
      if (bitmap) bitmap.close();
      await tf.nextFrame();
    }
  } finally {
    mirror.loopRunning = false;
    forgetSteady();
    if (next) next.then((bitmap) => bitmap && bitmap.close());
  }
}

async function stylizePicture(file) {
  if (!file || !file.type.startsWith('image/')) {
    say(`"${file ? file.name : ''}" is not a picture. ${PICTURE_HINT}`);
    return;
  }
  if (!mirror.net) {
    const state = document.body.dataset.state;
    if (state === 'no-models' || state === 'error') {
      say(state === 'no-models' ? NO_MODELS : 'The style could not be loaded: choose another one.');
      return;
    }
    mirror.pendingPicture = file; // the page is still starting or loading the style
    say(`${file.name} will be stylized as soon as the style has loaded…`);
    return;
  }
  mirror.mode = 'image';
  mirror.picture = file;
  document.body.dataset.state = 'image';
  // The camera's fps means nothing for a picture: blank it until the camera runs again.
  $('fps').textContent = '– fps';
  mirror.frameTimes = [];
  $('camera-button').hidden = !mirror.stream;
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
  const out = stylize(pixels, EDGE_PAD.image);
  pixels.dispose();
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  bitmap.close();
  await tf.browser.toPixels(out, canvas);
  out.dispose();
  mirror.pictures += 1;
  say('');
  document.body.dataset.state = 'image-done';
}

// A slider sends many changes while a picture takes a while: one more pass after the one
// running catches them all.
let restyling = null;
async function restylePicture() {
  if (mirror.mode !== 'image' || !mirror.picture) return;
  if (restyling) {
    restyling.again = true;
    return;
  }
  restyling = { again: false };
  try {
    do {
      restyling.again = false;
      await stylizePicture(mirror.picture);
    } while (restyling.again && mirror.mode === 'image');
  } finally {
    restyling = null;
  }
}
mirror.restylePicture = restylePicture;

// --- camera ---------------------------------------------------------------------------

function stopCamera() {
  if (mirror.stream) mirror.stream.getTracks().forEach((t) => t.stop());
  mirror.stream = null;
}

async function startCamera(deviceId) {
  stopCamera();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(`This browser gives this page no camera access (it needs http://127.0.0.1 or https). ${PICTURE_HINT}`);
    return false;
  }
  try {
    mirror.stream = await navigator.mediaDevices.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : { width: { ideal: 640 }, height: { ideal: 480 } },
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
  const track = mirror.stream.getVideoTracks()[0];
  mirror.capture = 'ImageCapture' in window ? new ImageCapture(track) : null;
  video.srcObject = mirror.capture ? null : mirror.stream;
  if (!mirror.capture) await video.play();
  await listCameras(track.getSettings().deviceId);
  mirror.mode = 'camera';
  cameraLoop();
  return true;
}

async function listCameras(current) {
  const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  const select = $('camera-select');
  select.replaceChildren(...cameras.map((c, i) => new Option(c.label || `camera ${i + 1}`, c.deviceId)));
  select.value = current;
  $('camera-label').hidden = cameras.length < 2;
}

// --- controls -------------------------------------------------------------------------

function snapshot() {
  canvas.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `stylemirror-${mirror.model || 'frame'}-${new Date().toISOString().replace(/[:.]/g, '-')}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, 'image/png');
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
  $('image-input').addEventListener('change', (e) => stylizePicture(e.target.files[0]));
  $('camera-button').addEventListener('click', () => {
    $('camera-button').hidden = true;
    mirror.mode = 'camera';
    document.body.dataset.state = 'ready';
    cameraLoop();
  });
  const stage = $('stage');
  stage.addEventListener('dragover', (e) => { e.preventDefault(); stage.classList.add('dragging'); });
  stage.addEventListener('dragleave', () => stage.classList.remove('dragging'));
  stage.addEventListener('drop', (e) => {
    e.preventDefault();
    stage.classList.remove('dragging');
    stylizePicture(e.dataTransfer.files[0]);
  });
}

async function main() {
  wireControls();
  if (params.get('steady') === 'off') $('steady').checked = false;
  const size = params.get('size');
  if (size && [...$('resolution-select').options].some((o) => o.value === size)) $('resolution-select').value = size;
  try {
    mirror.backend = await pickBackend();
  } catch (e) {
    say(e.message);
    document.body.dataset.state = 'error';
    return;
  }
  $('backend').textContent = mirror.threads > 1 ? `${mirror.backend} (${mirror.threads} threads)` : mirror.backend;
  try {
    mirror.models = await loadIndex();
  } catch (e) {
    say(`The model list could not be loaded (${e.message}). Is \`stylemirror mirror\` still running?`);
    document.body.dataset.state = 'error';
    return;
  }
  $('model-select').replaceChildren(...mirror.models.map((m) => new Option(m.label || m.name, m.name)));
  if (mirror.models.some((m) => m.watch)) Watch.keepLabels();
  if (!mirror.models.length) {
    say(NO_MODELS);
    document.body.dataset.state = 'no-models';
    return;
  }
  const wanted = params.get('model');
  const known = mirror.models.some((m) => m.name === wanted);
  const loaded = await useModel(known ? wanted : mirror.models[0].name);
  if (wanted && !known) {
    say(`There is no style named "${wanted}"; showing "${mirror.models[0].name}" instead. ` +
        `Available: ${mirror.models.map((m) => m.name).join(', ')}.`);
  }
  if (loaded && params.get('camera') !== 'off') await startCamera();
}

main();
