// The two page helpers every module uses: an element by its id, and the message line.

export const $ = (id) => document.getElementById(id);

export function say(text) {
  $('message').textContent = text || '';
  $('message').hidden = !text;
}

// Saves a blob as a download, "stylemirror-STEM-TIME.EXT".
export function download(blob, stem, ext) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `stylemirror-${stem}-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
