// The camera frame's size and edge pad: the user's where they chose one (?size=, the size
// select, ?edgepad=), else what holds the target frame rate (?fps=, default pace.js's), shown in
// the footer. The chosen size goes on the size select, which the camera loop reads every frame.
import { $ } from './dom.js';
import { DEFAULT_FPS, Pace } from './pace.js';
import { state } from './state.js';

const params = new URLSearchParams(location.search);
const select = $('resolution-select');
const asked = Number(params.get('fps'));
const target = asked > 0 && asked < Infinity ? asked : DEFAULT_FPS;
let auto = !params.has('size');
let pace = null; // made at the first camera frame, once index.json's settings are there

select.addEventListener('change', () => {
  auto = false;
  pace = null;
  show();
});

// Every size of the select, each without and (unless ?edgepad= fixes the pad) with the pad
// pictures get, costed by the pixels the network runs on (the pad rounded up as stylize does).
function levels() {
  const pads = params.has('edgepad') ? [null] : [0, state.settings.edge_pad];
  const m = state.settings.pad_multiple;
  const up = (n) => Math.ceil(n / m) * m;
  return [...select.options].flatMap((option) => {
    const [w, h] = option.value.split('x').map(Number);
    return pads.map((pad) => ({ size: option.value, pad,
      pixels: pad ? up(w + 2 * pad) * up(h + 2 * pad) : w * h }));
  });
}

function show() {
  const level = pace && pace.levels[pace.level];
  const size = select.selectedOptions[0].textContent;
  const pad = level && level.pad ? ' + edge pad' : '';
  state.pace = { auto, target, size: select.value, pad: level ? level.pad : null, changes: pace ? pace.changes : 0 };
  $('pace').textContent = auto ? `· ${size}${pad} · auto · ${target} fps target` : `· ${size} · chosen`;
}

// The edge pad for the next camera frame: the pace's where it chooses the pad, else `fallback`.
export function cameraPad(fallback) {
  const level = pace && pace.levels[pace.level];
  return level && level.pad !== null ? level.pad : fallback;
}

// Another style's network: the pace measures it afresh (a painting costs 3x the standard network).
export function networkChanged() {
  if (pace) pace.forget(performance.now());
}

// A camera frame stylized that kept the page busy `busyMs`: the size and pad for the next.
export function frameDone(busyMs) {
  if (auto && !pace) {
    const all = levels();
    pace = new Pace(all, { target, start: all.findIndex((l) => l.size === select.value && !l.pad) });
    show();
  }
  if (!pace) {
    if (!state.pace) show();
    return;
  }
  const before = pace.level;
  if (pace.frame(performance.now(), busyMs) === before) return;
  select.value = pace.levels[pace.level].size;
  show();
}
