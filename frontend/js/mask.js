// @ts-check
// A mask painted over an image with a brush and an eraser; each stroke is a step of the page's
// history (Undo, Ctrl+Z).
// Used for the inpainting hole (restore.js) and for the region of a local edit (region.js).
// The server's mask format: a binary PNG at the model's resolution, white marks the region.

import { canvas, context2d, el, input } from "./dom.js";

/**
 * @typedef {{
 *   canvas: string, brush: string, eraser: string, size: string, clear: string,
 *   record: (step: {painter: MaskPainter}) => void,
 *   stroked?: () => void,
 *   begin?: () => void,
 * }} PainterOptions
 * ``record``: put a step in the page's history (state.js), whose Undo calls this painter's
 * ``undo``; ``stroked``: the mask changed (a stroke ended, an undo, a clear, a preset);
 * ``begin``: a stroke starts.
 */

export class MaskPainter {
  /** @param {PainterOptions} opts */
  constructor(opts) {
    this.opts = opts;
    /** @type {HTMLCanvasElement} */
    this.canvas = canvas(opts.canvas);
    this.ctx = context2d(this.canvas, { willReadFrequently: true });
    /** @type {ImageData[]} */ this.undoStack = [];
    /** @type {ImageData[]} */ this.redoStack = [];
    this.erasing = false;
    this.painting = false;
    /** @type {{x: number, y: number} | null} */ this.last = null;
    this.wire();
  }

  /** The model's resolution: the mask is painted at the size of its images. */
  setResolution(/** @type {number} */ r) {
    if (this.canvas.width === r) return;
    this.canvas.width = this.canvas.height = r;
    this.undoStack = []; this.redoStack = [];
  }

  hasPaint() {
    const d = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) return true;
    return false;
  }

  /** @param {PointerEvent} e */
  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return { x: ((e.clientX - r.left) / r.width) * this.canvas.width, y: ((e.clientY - r.top) / r.height) * this.canvas.height };
  }

  /** @param {{x: number, y: number}} a @param {{x: number, y: number}} b */
  stroke(a, b) {
    const ctx = this.ctx;
    ctx.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = "rgb(220, 30, 30)";
    ctx.lineCap = "round";
    ctx.lineWidth = (Number(input(this.opts.size).value) * this.canvas.width) / 256;
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
  }

  snapshot() {
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.undoStack.length > 100) this.undoStack.shift();
    this.redoStack = [];
    this.opts.record({ painter: this });
  }

  undo() {
    const prev = this.undoStack.pop();
    if (!prev) return;
    this.redoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    this.ctx.putImageData(prev, 0, 0);
    this.opts.stroked?.();
  }

  redo() {
    const next = this.redoStack.pop();
    if (!next) return;
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    this.ctx.putImageData(next, 0, 0);
    this.opts.stroked?.();
  }

  clear() {
    if (!this.hasPaint()) return;
    this.snapshot();
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.opts.stroked?.();
  }

  /** Add a binary mask image (white: the region) to the paint, as one undoable step. */
  async addMask(/** @type {string} */ url) {
    const img = new Image();
    img.src = url;
    await img.decode();
    const { width, height } = this.canvas;
    const tmp = document.createElement("canvas");
    tmp.width = width; tmp.height = height;
    const tctx = context2d(tmp, { willReadFrequently: true });
    tctx.drawImage(img, 0, 0, width, height);
    const src = tctx.getImageData(0, 0, width, height).data;
    this.snapshot();
    const cur = this.ctx.getImageData(0, 0, width, height);
    for (let i = 0; i < src.length; i += 4) {
      if (src[i] >= 128) { cur.data[i] = 220; cur.data[i + 1] = 30; cur.data[i + 2] = 30; cur.data[i + 3] = 255; }
    }
    this.ctx.putImageData(cur, 0, 0);
    this.opts.stroked?.();
  }

  /** The painted region as a binary PNG (white: the region), the server's mask format. */
  async maskBlob() {
    const { width, height } = this.canvas;
    const src = this.ctx.getImageData(0, 0, width, height).data;
    const out = document.createElement("canvas");
    out.width = width; out.height = height;
    const octx = context2d(out);
    const img = octx.createImageData(width, height);
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] >= 128 ? 255 : 0;  // the brush's soft edge, thresholded here
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return /** @type {Promise<Blob>} */ (new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error("cannot encode the mask"))), "image/png")));
  }

  wire() {
    const { brush, eraser, clear } = this.opts;
    const tool = (/** @type {boolean} */ erase) => {
      this.erasing = erase;
      el(brush).setAttribute("aria-pressed", String(!erase));
      el(eraser).setAttribute("aria-pressed", String(erase));
    };
    el(brush).addEventListener("click", () => tool(false));
    el(eraser).addEventListener("click", () => tool(true));
    el(clear).addEventListener("click", () => this.clear());
    const c = this.canvas;
    c.addEventListener("pointerdown", (/** @type {PointerEvent} */ e) => {
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      this.opts.begin?.();
      this.snapshot();
      this.painting = true;
      this.last = this.point(e);
      this.stroke(this.last, this.last);
    });
    c.addEventListener("pointermove", (/** @type {PointerEvent} */ e) => {
      if (!this.painting || !this.last) return;
      const p = this.point(e);
      this.stroke(this.last, p);
      this.last = p;
    });
    const end = () => {
      if (!this.painting) return;
      this.painting = false;
      this.last = null;
      this.opts.stroked?.();
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
  }
}
