// The Restore panel: colorize, super-resolve or inpaint the upload with the multi-code GAN
// prior (docs/restoration.md). For inpainting the user paints the hole on the target with a
// brush and an eraser (mask.js); strokes are undoable like slider moves (Undo, Ctrl+Z).

import { MaskPainter } from "./mask.js";
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
    this.painter = new MaskPainter({
      canvas: "mask", brush: "mask-brush", eraser: "mask-eraser", size: "mask-size", clear: "mask-clear",
      begin: () => this.deps.say(""),
      record: (step) => { this.deps.state.record(step); this.deps.changed(); },
    });
    this.canvas = this.painter.canvas;
    this.wire();
  }

  /** The model's resolution: the mask is painted at the size of its crops. */
  setResolution(/** @type {number} */ r) { this.painter.setResolution(r); }

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


  // ---- running -------------------------------------------------------------------------

  async start() {
    const { state, api, say, send } = this.deps;
    if (!state.upload) { say("Upload a photo first."); return; }
    /** @type {Record<string, any>} */
    const restore = { task: this.task, handoff_steps: HANDOFF_STEPS };
    if (this.task === "superres") restore.scale = Number($("restore-scale").value);
    if (this.task === "inpaint") {
      if (!this.painter.hasPaint()) { say("Paint the region to fill in on the target first."); return; }
      const form = new FormData();
      form.append("file", await this.painter.maskBlob(), "mask.png");
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
  }
}
