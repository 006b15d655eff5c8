// @ts-check
// The preview: inversion previews and edit renders as they arrive, or a picture (a
// restoration's result). ``data-frames`` counts the frames drawn (the browser tests wait on it).

import { canvas, context2d, el } from "../dom.js";

export class PreviewView {
  constructor() {
    this.canvas = canvas("preview");
    this.ctx = context2d(this.canvas);
    this.frames = 0;
  }

  /** Draw an image frame; a frame the browser cannot decode is skipped.
   * @param {Blob} blob @param {string} caption */
  async draw(blob, caption) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob);
    } catch (err) {
      console.warn("a preview frame could not be decoded", err);
      return;
    }
    this.ctx.imageSmoothingEnabled = true;
    this.ctx.drawImage(bitmap, 0, 0, this.canvas.width, this.canvas.height);
    bitmap.close();
    this.frames += 1;
    this.canvas.dataset.frames = String(this.frames);
    el("preview-caption").textContent = caption;
  }

  /** Show a picture from a URL. @param {string} url @param {string} caption */
  picture(url, caption) {
    const img = new Image();
    img.onload = () => {
      this.ctx.drawImage(img, 0, 0, this.canvas.width, this.canvas.height);
      el("preview-caption").textContent = caption;
    };
    img.src = url;
  }

  clear() { this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height); }
}
