// Changing the style by steps (a swipe, an arrow key, the kiosk's cycle): one step at a time,
// each tried again with a growing wait until its style loads or a newer step replaces it.
import { state } from './state.js';

export const RETRY_MS = { first: 1000, cap: 10000 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Calls `attempt` until it resolves true, waiting 1 s, 2 s, 4 s … (at most 10 s) between tries.
export async function untilDone(attempt, { first = RETRY_MS.first, cap = RETRY_MS.cap } = {}) {
  for (let wait = first; !(await attempt()); wait = Math.min(2 * wait, cap)) await sleep(wait);
}

// step(+1 | -1): the next or previous style of state.models after the one asked last (a step
// still loading counts), loaded with useModel(name) -> true once shown. Resolves true once that
// style shows, false where a newer step replaced it.
export function styleStepper(useModel) {
  let asked = 0;
  let target = null; // the style the latest step is loading
  let queue = Promise.resolve();
  return function step(by) {
    const { models } = state;
    if (!models.length) return Promise.resolve(false);
    const from = models.findIndex((m) => m.name === (target ?? state.model));
    const { name } = models[(((from + by) % models.length) + models.length) % models.length];
    const ticket = ++asked;
    target = name;
    const current = () => ticket === asked;
    queue = queue.then(() => untilDone(async () => !current() || useModel(name))).then(() => {
      if (current()) target = null;
      return current();
    });
    return queue;
  };
}
