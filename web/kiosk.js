// Kiosk mode (?kiosk; kiosk.css lays it out): the stylized camera alone, full screen, no cursor,
// the styles in turn every ?cycle=N seconds (0: never) with the painting's name and picture in
// a corner; arrow keys, clicks and taps change the style. It mends itself: a camera that ends
// or fails is asked for again, and a style that cannot load (the server restarting) is tried
// again while the last one keeps showing.
import { $ } from './dom.js';
import { state } from './state.js';
import { untilDone } from './turns.js';

export const DEFAULT_CYCLE_S = 30;

// ?cycle=N: seconds per style; 0 stops the cycle; absent or not a number: the default.
export function cycleSeconds(params) {
  const seconds = Number(params.get('cycle') ?? DEFAULT_CYCLE_S);
  return params.get('cycle') !== '' && Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_CYCLE_S;
}

// Browsers go full screen only on a gesture: the first key, click or tap asks.
function fullScreen() {
  if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
    document.documentElement.requestFullscreen().catch(() => {});
  }
}

// step(+1 | -1) changes the style (turns.js); returns {showStyle(entry), keepCamera(start)}.
export function start({ cycle = DEFAULT_CYCLE_S, step } = {}) {
  document.body.classList.add('kiosk');
  let timer = null;
  const turn = (by) => {
    fullScreen();
    return step(by);
  };
  addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') turn(e.key === 'ArrowRight' ? 1 : -1);
  });
  $('stage').addEventListener('click', () => turn(1)); // a mouse; touches are room.js's gestures

  // Called whenever a style shows: its label in the corner, and the next turn of the cycle.
  function showStyle(entry) {
    const label = $('kiosk-label');
    label.querySelector('span').textContent = entry.label || entry.name;
    const picture = label.querySelector('img');
    picture.hidden = !entry.thumbnail;
    if (entry.thumbnail) picture.src = entry.thumbnail;
    label.hidden = false;
    clearTimeout(timer);
    if (cycle > 0) timer = setTimeout(() => step(1), 1000 * cycle);
  }

  // The camera, asked for until it comes, and again whenever its track ends.
  async function keepCamera(startCamera) {
    await untilDone(() => startCamera());
    state.stream.getVideoTracks()[0].addEventListener('ended', () => keepCamera(startCamera), { once: true });
  }

  return { showStyle, keepCamera, turn };
}
