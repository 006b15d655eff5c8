// The Restore panel: colorize, super-resolve or inpaint the upload with the multi-code GAN
// prior (docs/restoration.md). For inpainting the user paints the hole on the target with a
// brush and an eraser; strokes are undoable like slider moves (Undo, Ctrl+Z).

import * as P from "./protocol.js";

export const RESTORE_STEPS = 150;  // mGANprior's steps (the CLI's default)
export const HANDOFF_STEPS = 60;  // then one W+ latent for the sliders

/**
 * @typedef {{
 *   state: import("./state.js").State,
 *   send: (msg: object) => boolean,
 *   api: (path: string, init?: RequestInit) => Promise<any>,
 *   say: (text: string, kind?: "error" | "info") => void,
 *   engine: () => string,
 *   changed: () => void,
 * }} Deps
 */

/** @param {string} id @returns {any} */
const $ = (id) => document.getElementById(id);

export class RestorePanel {
  /** @param {Deps} deps */
  constructor(deps) {
    this.deps = deps;
    /** @type {HTMLCanvasElement} */
    this.canvas = $("mask");
    this.ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d"));
    /** @type {ImageData[]} */ this.undoStack = [];
    /** @type {ImageData[]} */ this.redoStack = [];
    this.erasing = false;
    this.painting = false;
    /** @type {{x: number, y: number} | null} */ this.last = null;
    this.wire();
  }

  /** The model's resolution: the mask is painted at the size of its crops. */
  setResolution(/** @type {number} */ r) {
    if (this.canvas.width === r) return;
    this.canvas.width = this.canvas.height = r;
    this.undoStack = []; this.redoStack = [];
  }

  /** Show the panel when the model can restore. */
  setTasks(/** @type {string[]} */ tasks) {
    $("restore").hidden = tasks.length === 0;
    for (const opt of $("restore-task").options) opt.disabled = !tasks.includes(opt.value);
  }

  get task() { return /** @type {string} */ ($("restore-task").value); }

  update() {
    const inpaint = this.task === "inpaint";
    $("mask-tools").hidden = !inpaint;
    this.canvas.hidden = !inpaint || !this.deps.state.upload;
    $("restore-scale-row").hidden = this.task !== "superres";
    $("restore-start").disabled = !this.deps.state.upload || !!this.deps.state.inversionJob;
    $("restore-hint").textContent = {
      colorize: "The photo is seen in gray; the model supplies the colour, the photo keeps its own brightness.",
      superres: `The photo is seen at 1/${$("restore-scale").value} of the model's resolution; the model supplies the detail.`,
      inpaint: "Paint the region to fill in on the target (brush), correct with the eraser; the rest of the photo is kept.",
    }[this.task] ?? "";
  }

  // ---- the mask ------------------------------------------------------------------------

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
    ctx.lineWidth = (Number($("mask-size").value) * this.canvas.width) / 256;
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
  }

  snapshot() {
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.undoStack.length > 50) this.undoStack.shift();
    this.redoStack = [];
    this.deps.state.undoScope = "mask";
    this.deps.changed();
  }

  canUndo() { return this.undoStack.length > 0; }
  canRedo() { return this.redoStack.length > 0; }

  undo() {
    const prev = this.undoStack.pop();
    if (!prev) return;
    this.redoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    this.ctx.putImageData(prev, 0, 0);
    this.deps.changed();
  }

  redo() {
    const next = this.redoStack.pop();
    if (!next) return;
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    this.ctx.putImageData(next, 0, 0);
    this.deps.changed();
  }

  clear() {
    if (!this.hasPaint()) return;
    this.snapshot();
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** The painted hole as a binary PNG (white: fill in), the server's mask format. */
  async maskBlob() {
    const { width, height } = this.canvas;
    const src = this.ctx.getImageData(0, 0, width, height).data;
    const out = document.createElement("canvas");
    out.width = width; out.height = height;
    const octx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
    const img = octx.createImageData(width, height);
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] >= 128 ? 255 : 0;  // the brush's soft edge, thresholded here
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return /** @type {Promise<Blob>} */ (new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error("cannot encode the mask"))), "image/png")));
  }

  // ---- running -------------------------------------------------------------------------

  async start() {
    const { state, api, say, send } = this.deps;
    if (!state.upload) { say("Upload a photo first."); return; }
    /** @type {Record<string, any>} */
    const restore = { task: this.task, handoff_steps: HANDOFF_STEPS };
    if (this.task === "superres") restore.scale = Number($("restore-scale").value);
    if (this.task === "inpaint") {
      if (!this.hasPaint()) { say("Paint the region to fill in on the target first."); return; }
      const form = new FormData();
      form.append("file", await this.maskBlob(), "mask.png");
      try {
        const r = await api(`/api/sessions/${state.session}/masks`, { method: "POST", body: form });
        restore.mask = r.mask;
        $("restore-note").textContent = `mask: ${(r.hole_fraction * 100).toFixed(0)} % of the face to fill in`;
      } catch (err) {
        say(/** @type {Error} */ (err).message);
        return;
      }
    }
    say("");
    send(P.startRestore(this.deps.engine(), RESTORE_STEPS, state.upload, restore));
  }

  /** The server's note on the input (e.g. a colour photo seen in gray). */
  started(/** @type {string | null | undefined} */ note) {
    if (note) $("restore-note").textContent = note;
  }

  wire() {
    $("restore-task").addEventListener("change", () => this.update());
    $("restore-scale").addEventListener("change", () => this.update());
    $("restore-form").addEventListener("submit", (/** @type {Event} */ e) => { e.preventDefault(); this.start(); });
    const tool = (/** @type {boolean} */ erase) => {
      this.erasing = erase;
      $("mask-brush").setAttribute("aria-pressed", String(!erase));
      $("mask-eraser").setAttribute("aria-pressed", String(erase));
    };
    $("mask-brush").addEventListener("click", () => tool(false));
    $("mask-eraser").addEventListener("click", () => tool(true));
    $("mask-clear").addEventListener("click", () => this.clear());
    const c = this.canvas;
    c.addEventListener("pointerdown", (/** @type {PointerEvent} */ e) => {
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      this.deps.say("");
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
    const end = () => { this.painting = false; this.last = null; };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
  }
}
