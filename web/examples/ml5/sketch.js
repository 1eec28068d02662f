// ml5.js 0.12.2's styleTransfer on the webcam, as in the classic tutorial's sketch.
// ?model=NAME picks one of the models `stylemirror mirror` serves; ?size=WxH the frame size;
// ?frames=N stops after N frames.
let video;
let style;
let result;
let frames = 0;
const maxFrames = Number(new URLSearchParams(location.search).get('frames')) || Infinity;

function setup() {
  const [w, h] = (new URLSearchParams(location.search).get('size') || '320x240').split('x').map(Number);
  createCanvas(w, h).parent('sketch');
  video = createCapture(VIDEO);
  video.size(w, h);
  video.hide();
  result = createImg('', 'stylized');
  result.hide();
  fetch('../../models/index.json')
    .then((response) => response.json())
    .then(({ models }) => {
      models = models.filter((m) => m.format === 'ml5'); // ml5.js reads its own folders only
      const wanted = new URLSearchParams(location.search).get('model');
      const model = models.find((m) => m.name === wanted) || models[0];
      if (!model) {
        select('#status').html('No model yet: run <code>stylemirror models pull wave</code> and reload.');
        return;
      }
      select('#status').html(`Loading ${model.name}…`);
      style = ml5.styleTransfer(`../../${model.url.replace(/\/$/, '')}`, video, () => {
        select('#status').html(`${model.name} loaded (ml5 backend: ${ml5.tf.getBackend()})`);
        style.transfer(gotResult);
      });
    });
}

function gotResult(error, image) {
  if (error) {
    select('#status').html(`ml5 error: ${error}`);
    return;
  }
  result.attribute('src', image.src);
  frames += 1;
  window.ml5Frames = frames; // read by the tests and the benchmark
  if (frames < maxFrames) style.transfer(gotResult);
}

function draw() {
  background(0);
  if (frames > 0) image(result, 0, 0, width, height);
}
