// watch.js's poller, in a worker: while the camera loop keeps the page's main thread busy, each
// step of a fetch there waits about a frame (three or more for a poll, more for a network),
// which on a slow machine took a new network over 4 s to arrive. Here the polls and the
// download run on their own thread; the page gets one message with the network's bytes.
'use strict';

const POLL_MS = 500;

// latest: the run's latest.json; base: the page's URL, which the network's URL is relative to.
onmessage = async ({ data: { latest, base, step } }) => {
  let shown = step; // the step of the network the page has
  for (;;) {
    try {
      const response = await fetch(latest, { cache: 'no-store' });
      if (!response.ok) throw new Error(`${latest}: HTTP ${response.status}`);
      const now = await response.json();
      if (now.model && now.step !== shown) {
        const model = await fetch(new URL(now.model, base), { cache: 'no-store' });
        if (!model.ok) throw new Error(`${now.model}: HTTP ${model.status}`);
        const bytes = await model.arrayBuffer();
        shown = now.step;
        postMessage({ now, bytes }, [bytes]);
      } else {
        postMessage({ now });
      }
    } catch (e) {
      // A network replaced while it downloaded, or the server restarting: the next poll retries.
      postMessage({ error: e.message });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
};
