// Everything the page knows, in one place: the modules share it through this object, never
// through globals (tests read it as window.mirror).

export const state = {
  settings: null, // what the page computes as Python does (index.json's "settings": mirror.py)
  arbitrary: null, // the arbitrary-style transformer's weights and the style route (index.json's "arbitrary")
  backend: null,
  threads: null, // wasm's threads
  net: null,
  model: null,
  models: [],
  stream: null,
  capture: null, // ImageCapture of the camera's track, where the browser has it
  facing: 'user', // the camera asked for: 'user' (front) or 'environment' (back) (room.js flips it)
  mirrored: true, // the camera's frames shown flipped left to right, as a mirror shows a face
  mode: 'camera', // or 'image'
  pendingPicture: null, // a picture chosen while the style was loading: stylized once it is ready
  picture: null, // the picture on show in picture mode: stylized again when the style or blend changes
  pictures: 0, // pictures stylized so far
  frames: 0,
  pace: null, // the camera's size: {auto, target (fps), size, pad (null: not the pace's), changes} (camera-size.js)
  frameTimes: [],
  lastFrame: null, // the last camera frame drawn: {model (its style), began, at (performance.now() ms)}
  stageMs: {}, // the camera loop's milliseconds by stage, summed over its frames (`bench mirror`)
  loopRunning: false,
  styleSwap: null, // a dropped picture on its way to being the style: the camera loop waits for it
  watch: null, // a training run's network on show: {step, loaded_at (ms since 1970)} (watch.js)
  blend: null, // a multi-style model's weights in use, {style: weight} (blend.js)
  steadyFrame: null, // the camera's last frame with its noise steadied (stylenet.steady), kept for the next
};
