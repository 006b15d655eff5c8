// @ts-check
// "Edit only here": the sliders, mixing and truncation act inside a region the user paints on
// the edited face (brush, eraser, presets found on the face), the rest of the image stays the
// current latent's (docs/local-editing.md). Strokes are undoable like slider moves.

import { el, input, say, select } from "../dom.js";
import { MaskPainter } from "../mask.js";
import * as P from "../protocol.js";
import { postFile } from "../server.js";


export class RegionPanel {
  /** @param {import("../state.js").Ctx} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.painter = new MaskPainter({
      canvas: "region-mask", brush: "region-brush", eraser: "region-eraser", size: "region-size", clear: "region-clear",
      begin: () => say(""),
      record: (step) => { ctx.state.record(step); ctx.state.changed(); },
      stroked: () => this.upload(),
    });
    /** The mask id the server holds for the current paint (null: none yet, or stale). */
    /** @type {string | null} */ this.mask = null;
    this.uploads = 0;  // a counter, so that only the newest upload's answer is used
    this.wire();
  }

  get on() { return input("region-on").checked; }

  setResolution(/** @type {number} */ r) {
    this.painter.setResolution(r);
    const blend = select("region-blend");
    blend.replaceChildren();
    const opts = [];
    for (let res = 8; res <= r; res *= 2) opts.push(res);
    const fallback = Math.max(8, r / 8);
    for (const res of opts) {
      const o = document.createElement("option");
      o.value = String(res);
      o.textContent = res === fallback ? `${res} px (default)` : `${res} px`;
      o.selected = res === fallback;
      blend.append(o);
    }
  }

  /** A new face (inversion, random face): the paint stays, the server's preset needs a face. */
  update() {
    const on = this.on;
    el("region-tools").hidden = !on;
    this.painter.canvas.hidden = !on;
    el("region-preset-add", HTMLButtonElement).disabled = !this.ctx.state.latent;
  }

  /** Another session (a model switch): its masks are gone. */
  reset() {
    this.mask = null;
    this.uploads++;
    this.painter.ctx.clearRect(0, 0, this.painter.canvas.width, this.painter.canvas.height);
    this.painter.undoStack = []; this.painter.redoStack = [];  // the page's history is reset too
    input("region-on").checked = false;
    el("region-note").textContent = "";
    this.update();
  }


  /** The edit's region field: null when region editing is off or nothing is painted. */
  region() {
    if (!this.on || !this.mask) return null;
    return { mask: this.mask, blend_res: Number(select("region-blend").value) };
  }

  apply() { this.ctx.state.setEdit({ region: this.region() }); }

  /** Send the painted mask to the server; the edit then refers to it. */
  async upload() {
    const ticket = ++this.uploads;
    if (!this.painter.hasPaint()) {
      this.mask = null;
      el("region-note").textContent = "Paint the region to edit (or add a preset).";
      this.apply();
      return;
    }
    const { state } = this.ctx;
    try {
      const r = await postFile(`/api/sessions/${state.session}/masks`, await this.painter.maskBlob(), "region.png");
      if (ticket !== this.uploads) return;
      this.mask = r.mask;
      el("region-note").textContent = `region: ${(r.hole_fraction * 100).toFixed(1)} % of the image; the sliders act inside it`;
      this.apply();
    } catch (err) {
      say(`The region cannot be used: ${/** @type {Error} */ (err).message}`);
    }
  }

  /** A preset found on the face arrived (``done`` with kind ``region``): add it to the paint. */
  async presetFound(/** @type {{mask_url: string}} */ e) {
    await this.painter.addMask(e.mask_url);
  }

  wire() {
    el("region-on").addEventListener("change", () => {
      this.update();
      if (this.on && !this.mask && !this.painter.hasPaint()) {
        el("region-note").textContent = "Paint the region to edit on the preview (or add a preset).";
      }
      this.apply();
    });
    el("region-blend").addEventListener("change", () => this.apply());
    el("region-preset-add").addEventListener("click", () => {
      say("");
      el("region-note").textContent = `finding the ${select("region-preset").value} on the face…`;
      this.ctx.send(P.regionPreset(select("region-preset").value));
    });
  }
}
