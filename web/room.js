// The page on a phone or tablet (room.css lays it out): a swipe on the picture changes the
// style, a tap takes a snapshot, the controls stay folded behind a small button until it is
// tapped, and a flip button turns to the other camera.
import { $ } from './dom.js';
import { state } from './state.js';

const SWIPE_PX = 50; // a finger that moves less than this far is a tap
const TAP_MS = 600; // one held longer is neither

// A finger, not a mouse, is the main pointer (the media query room.css uses).
export const touchScreen = () => matchMedia('(pointer: coarse)').matches;

// onSwipe(+1) for a swipe to the left (the next style), onSwipe(-1) to the right; onTap().
export function wireGestures(surface, { onSwipe = () => {}, onTap = () => {} } = {}) {
  let start = null;
  surface.addEventListener('touchstart', (e) => {
    const [t] = e.touches;
    start = e.touches.length === 1 ? { x: t.clientX, y: t.clientY, at: performance.now() } : null;
  }, { passive: true });
  surface.addEventListener('touchcancel', () => { start = null; });
  surface.addEventListener('touchend', (e) => {
    if (!start || e.touches.length) return;
    const [t] = e.changedTouches;
    const [dx, dy] = [t.clientX - start.x, t.clientY - start.y];
    const quick = performance.now() - start.at < TAP_MS;
    start = null;
    if (Math.abs(dx) >= SWIPE_PX && Math.abs(dx) > 2 * Math.abs(dy)) {
      e.preventDefault(); // no click follows
      onSwipe(dx < 0 ? 1 : -1);
    } else if (quick && Math.hypot(dx, dy) < SWIPE_PX / 2) {
      e.preventDefault();
      onTap();
    }
  });
}

// On a touch screen the controls start folded; the fold button opens and closes them.
export function wireFold() {
  const button = $('fold-button');
  const fold = (folded) => {
    document.body.classList.toggle('folded', folded);
    button.setAttribute('aria-expanded', String(!folded));
  };
  fold(touchScreen());
  button.addEventListener('click', () => fold(!document.body.classList.contains('folded')));
}

// The flip button only where there is another camera to turn to: a phone's or tablet's back
// one, or a second camera.
export function showFlip(cameras) {
  $('flip-camera').hidden = !(touchScreen() || cameras >= 2);
}

// The other camera: front and back by facingMode; where the camera does not say which way it
// faces (most webcams) and the same one came back, the next one in the list.
export async function flipCamera(startCamera) {
  const deviceOf = () => state.stream && state.stream.getVideoTracks()[0].getSettings().deviceId;
  const before = deviceOf();
  state.facing = state.facing === 'user' ? 'environment' : 'user';
  if (!(await startCamera())) return false;
  const select = $('camera-select');
  if (deviceOf() !== before || select.options.length < 2) return true;
  const next = select.options[(select.selectedIndex + 1) % select.options.length].value;
  return startCamera(next);
}
