// Which camera size (and edge pad) holds a target frame rate: a pure decision from the frames'
// times, with no page in it, so that node runs it on synthetic machines (tests/test_pace.py).
// Levels rise in cost; each frame's busy time (its own work, no waiting) goes in, the level to
// run comes out. Judged over a window of frames (some seconds' worth): below the target it
// steps down to the highest level whose predicted rate reaches it; it climbs one level where
// the next level's predicted rate clears the target by a margin. A prediction scales the rate
// by the levels' pixel counts until both levels have been measured one after the other; from
// then on by their measured ratio, so that a level left for being slow is not tried again until
// the rate here has risen by what it lacked (no swinging around a boundary). After every change
// the new size warms up (XNNPACK packs its kernels, shapes are new) before it is judged.
export const DEFAULT_FPS = 12;

export class Pace {
  // levels: [{pixels, ...}] in rising cost; start: the index to begin at.
  // A window is at least `frames` frames and `windowMs` of their busy time.
  constructor(levels, { target = DEFAULT_FPS, start = 0, frames = 8, windowMs = 2000, settleMs = 2000, margin = 1.25 } = {}) {
    if (!levels.length) throw new Error('Pace needs at least one level');
    Object.assign(this, { levels, target, frames, windowMs, settleMs, margin });
    this.level = Math.min(Math.max(0, start), levels.length - 1);
    this.busy = []; // the last frames' busy milliseconds at this level
    this.busySum = 0;
    this.settledAt = -Infinity; // frames before this time are warm-up: not judged
    this.ratios = new Map(); // "from>to" -> the rate at `to` over the rate at `from`, as measured
    this.left = null; // {level, rate}: the level just left and its rate, until this one is measured
    this.changes = 0;
  }

  // One frame done at time `now` (ms) that kept the page busy `busyMs`; returns the level to run.
  frame(now, busyMs) {
    if (now < this.settledAt) return this.level;
    this.busy.push(busyMs);
    this.busySum += busyMs;
    while (this.busy.length > this.frames && this.busySum - this.busy[0] >= this.windowMs) this.busySum -= this.busy.shift();
    if (this.busy.length < this.frames || this.busySum < this.windowMs) return this.level;
    const rate = (1000 * this.busy.length) / this.busySum;
    if (this.left) {
      this.ratios.set(`${this.level}>${this.left.level}`, this.left.rate / rate);
      this.ratios.set(`${this.left.level}>${this.level}`, rate / this.left.rate);
      this.left = null;
    }
    const predict = (j) => rate * (this.ratios.get(`${this.level}>${j}`) ?? this.levels[this.level].pixels / this.levels[j].pixels);
    if (rate < this.target && this.level > 0) {
      let j = this.level - 1;
      while (j > 0 && predict(j) < this.target) j--;
      return this.change(j, now, rate);
    }
    const up = this.level + 1;
    if (up < this.levels.length && predict(up) >= this.target * this.margin) return this.change(up, now, rate);
    return this.level;
  }

  // Another network from `now` on: what was measured was the last one's costs. The level is
  // kept and judged again once the new network has warmed up.
  forget(now) {
    this.ratios.clear();
    this.left = null;
    this.busy = [];
    this.busySum = 0;
    this.settledAt = now + this.settleMs;
  }

  change(level, now, rate) {
    this.left = { level: this.level, rate };
    this.level = level;
    this.busy = [];
    this.busySum = 0;
    this.settledAt = now + this.settleMs;
    this.changes += 1;
    return level;
  }
}
