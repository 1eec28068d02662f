// Recording the stylized view: MediaRecorder on the output canvas's stream, saved as a WebM
// download, with a visible indicator and a time limit (?recordlimit=SECONDS changes it).
import { $, download } from './dom.js';
import { state } from './state.js';

const LIMIT_S = Number(new URLSearchParams(location.search).get('recordlimit')) || 60;
const TYPES = ['video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm'];
let recorder = null;
let ticker = null;

const type = () => window.MediaRecorder && TYPES.find((t) => MediaRecorder.isTypeSupported(t));

function indicate(startedAt) {
  const elapsed = Math.floor((performance.now() - startedAt) / 1000);
  const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  $('recording').textContent = `● REC ${clock(elapsed)} / ${clock(LIMIT_S)}`;
}

function start() {
  const mimeType = type();
  const stream = $('output').captureStream(30);
  const chunks = [];
  recorder = new MediaRecorder(stream, { mimeType });
  recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(ticker);
    recorder = null;
    $('recording').hidden = true;
    $('record').textContent = 'record';
    download(new Blob(chunks, { type: mimeType }), state.model || 'clip', 'webm');
  };
  const startedAt = performance.now();
  recorder.start(1000); // a chunk a second: a long clip is not held as one growing buffer
  indicate(startedAt);
  $('recording').hidden = false;
  $('record').textContent = 'stop';
  ticker = setInterval(() => {
    indicate(startedAt);
    if (performance.now() - startedAt >= 1000 * LIMIT_S) stop();
  }, 250);
}

function stop() {
  if (recorder && recorder.state !== 'inactive') recorder.stop();
}

// The record button: a clip of the stylized view, where the browser can record a canvas.
export function wireRecording() {
  const button = $('record');
  if (!type() || !$('output').captureStream) {
    button.disabled = true;
    button.title = 'this browser cannot record a canvas (no MediaRecorder with WebM)';
    return;
  }
  button.title = `record a clip of the stylized view (at most ${LIMIT_S} s), saved as WebM`;
  button.addEventListener('click', () => (recorder ? stop() : start()));
}

