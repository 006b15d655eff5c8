// @ts-check
// The Restore panel: colorize, super-resolve or inpaint the upload with the multi-code GAN
// prior (docs/restoration.md). For inpainting the user paints the hole on the target with a
// brush and an eraser (mask.js); strokes are undoable like slider moves (Undo, Ctrl+Z).

import { el, say, select } from "../dom.js";
import { MaskPainter } from "../mask.js";
import * as P from "../protocol.js";
import { postFile } from "../server.js";

export const RESTORE_STEPS = 150;  // mGANprior's steps (the CLI's default)
export const HANDOFF_STEPS = 60;  // then one W+ latent for the sliders


export class RestorePanel {
  /**
   * @param {import("../state.js").Ctx} ctx
   * @param {() => string} engine the inversion panel's engine (the hand-off's)
   */
  constructor(ctx, engine) {
    this.ctx = ctx;
    this.engine = engine;
    this.painter = new MaskPainter({
      canvas: "mask", brush: "mask-brush", eraser: "mask-eraser", size: "mask-size", clear: "mask-clear",
      begin: () => say(""),
      record: (step) => { ctx.state.record(step); ctx.state.changed(); },
    });
    this.canvas = this.painter.canvas;
    this.wire();
  }

  /** The model's resolution: the mask is painted at the size of its crops. */
  setResolution(/** @type {number} */ r) { this.painter.setResolution(r); }

  /** Show the panel when the model can restore. */
  setTasks(/** @type {string[]} */ tasks) {
    el("restore").hidden = tasks.length === 0;
    for (const opt of select("restore-task").options) opt.disabled = !tasks.includes(opt.value);
  }

  get task() { return select("restore-task").value; }

  update() {
    const inpaint = this.task === "inpaint";
    el("mask-tools").hidden = !inpaint;
    this.canvas.hidden = !inpaint || !this.ctx.state.upload;
    el("restore-scale-row").hidden = this.task !== "superres";
    el("restore-start", HTMLButtonElement).disabled = !this.ctx.state.upload || !!this.ctx.state.inversionJob;
    el("restore-hint").textContent = {
      colorize: "The photo is seen in gray; the model supplies the colour, the photo keeps its own brightness.",
      superres: `The photo is seen at 1/${select("restore-scale").value} of the model's resolution; the model supplies the detail.`,
      inpaint: "Paint the region to fill in on the target (brush), correct with the eraser; the rest of the photo is kept.",
    }[this.task] ?? "";
  }


  // ---- running -------------------------------------------------------------------------

  async start() {
    const { state, send } = this.ctx;
    if (!state.upload) { say("Upload a photo first."); return; }
    /** @type {P.Restore} */
    const restore = { task: this.task, handoff_steps: HANDOFF_STEPS };
    if (this.task === "superres") restore.scale = Number(select("restore-scale").value);
    if (this.task === "inpaint") {
      if (!this.painter.hasPaint()) { say("Paint the region to fill in on the target first."); return; }
      try {
        const r = await postFile(`/api/sessions/${state.session}/masks`, await this.painter.maskBlob(), "mask.png");
        restore.mask = r.mask;
        el("restore-note").textContent = `mask: ${(r.hole_fraction * 100).toFixed(0)} % of the face to fill in`;
      } catch (err) {
        say(/** @type {Error} */ (err).message);
        return;
      }
    }
    say("");
    send(P.startRestore(this.engine(), RESTORE_STEPS, state.upload, restore));
  }

  /** The server's note on the input (e.g. a colour photo seen in gray). */
  started(/** @type {string | null | undefined} */ note) {
    if (note) el("restore-note").textContent = note;
  }

  wire() {
    el("restore-task").addEventListener("change", () => this.update());
    el("restore-scale").addEventListener("change", () => this.update());
    el("restore-form").addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
  }
}
