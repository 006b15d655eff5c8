// @ts-check
// 3. Edit: the sliders (named directions, and SeFa/GANSpace components), truncation, style
// mixing, Undo/Redo (slider moves and mask strokes, state.js), Before/after, Commit; and the
// render loop: at most one render request per animation frame, sent when what is on show
// would change (the server draws only the newest anyway).

import { button, el, input, select } from "../dom.js";
import * as P from "../protocol.js";
import { neutralEdit } from "../state.js";

// The keys that move a range input (a checkpoint each); Ctrl+Z on a focused slider is not one.
const SLIDER_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"]);

export class EditPanel {
  /**
   * @param {import("../state.js").Ctx} ctx
   * @param {{ region: () => P.Region | null, regionFollow: () => void }} region the
   *   region panel: the edit's region, and re-applying it after an undo of the edits
   */
  constructor(ctx, region) {
    this.ctx = ctx;
    this.region = region;
    this.comparing = false;
    /** What the last render request showed (latent, edit, comparing); null: render again. */
    /** @type {string | null} */ this.shown = null;
    this.wire();
  }

  /** The edit on show: the user's, or none while comparing. */
  get onShow() { return this.comparing ? neutralEdit() : this.ctx.state.edit; }

  key() { return JSON.stringify([this.ctx.state.latent, this.onShow]); }

  /** Send a render when what is on show changed; call once per animation frame. */
  tick() {
    const { state, send } = this.ctx;
    if (!state.latent) return;
    const key = this.key();
    if (key !== this.shown && send(P.renderEdit(this.onShow))) this.shown = key;
  }

  /** Render again on the next tick (a reconnect: the frame on show may be stale). */
  invalidate() { this.shown = null; }

  /** Keep what is on show (a restoration's picture) until the edit changes. */
  hold() { this.shown = this.key(); }

  caption() { return this.comparing ? "before (no edits)" : "edited"; }

  update() {
    const { state } = this.ctx;
    button("commit").disabled = !state.latent;
    button("undo").disabled = state.undoStack.length === 0;
    button("redo").disabled = state.redoStack.length === 0;
    this.syncControls();
  }

  undo() { this.ctx.state.undo(); this.region.regionFollow(); }
  redo() { this.ctx.state.redo(); this.region.regionFollow(); }

  buildSliders() {
    const { state } = this.ctx;
    const named = el("sliders");
    const components = el("component-sliders");
    named.replaceChildren();
    components.replaceChildren();
    for (const d of state.directions) {
      const box = d.method === "sefa" || d.method === "ganspace" ? components : named;
      box.append(this.slider(d));
    }
    el("components").hidden = components.children.length === 0;
    this.syncControls();
  }

  /** One slider: label (name, method, layers), the value, the range and a reset button.
   * @param {P.DirectionInfo} d */
  slider(d) {
    const { state } = this.ctx;
    const id = `dir-${d.name}`;
    const wrap = document.createElement("div");
    wrap.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = id;
    const name = document.createElement("span");
    name.textContent = `${d.name.replaceAll("_", " ")} (${d.method}, ${d.layers})`;
    label.append(name, document.createElement("output"));
    const line = document.createElement("div");
    line.className = "line";
    const range = document.createElement("input");
    Object.assign(range, { id, type: "range", min: String(d.slider[0]), max: String(d.slider[1]), step: String(d.step / 10), value: "0" });
    range.dataset.name = d.name;
    const reset = document.createElement("button");
    reset.type = "button";
    reset.textContent = "reset";
    line.append(range, reset);
    wrap.append(label, line);
    range.addEventListener("pointerdown", () => state.checkpoint());
    range.addEventListener("keydown", (e) => { if (SLIDER_KEYS.has(e.key) && !e.ctrlKey && !e.metaKey) state.checkpoint(); });
    range.addEventListener("input", () => {
      state.setEdit({ scales: { ...state.edit.scales, [d.name]: Number(range.value) } });
    });
    reset.addEventListener("click", () => {
      state.checkpoint();
      const scales = { ...state.edit.scales };
      delete scales[d.name];
      state.setEdit({ scales });
    });
    return wrap;
  }

  /** Make every control show state.edit (after undo/redo/reset). */
  syncControls() {
    const { edit } = this.ctx.state;
    for (const range of document.querySelectorAll("#sliders input, #component-sliders input")) {
      if (!(range instanceof HTMLInputElement)) continue;
      const v = edit.scales[range.dataset.name ?? ""] ?? 0;
      range.value = String(v);
      const out = range.closest(".slider")?.querySelector("output");
      if (out) out.textContent = Number(v).toFixed(2);
    }
    input("truncation").value = String(edit.truncation);
    el("truncation-out").textContent = edit.truncation.toFixed(2);
    const mix = edit.mixing;
    input("mix-on").checked = !!mix;
    if (mix) { input("mix-seed").value = String(mix.seed); select("mix-layers").value = mix.layers; }
  }

  /** @returns {P.Mixing | null} */
  readMixing() {
    return input("mix-on").checked
      ? { seed: Math.max(0, Number(input("mix-seed").value) | 0), layers: select("mix-layers").value }
      : null;
  }

  wire() {
    const { state, send } = this.ctx;
    el("undo").addEventListener("click", () => this.undo());
    el("redo").addEventListener("click", () => this.redo());
    el("reset-all").addEventListener("click", () => {
      state.checkpoint();
      state.setEdit({ ...neutralEdit(), region: this.region.region() });
    });
    const compare = el("compare");
    compare.addEventListener("click", () => {
      this.comparing = !this.comparing;
      compare.setAttribute("aria-pressed", String(this.comparing));
    });
    input("truncation").addEventListener("pointerdown", () => state.checkpoint());
    input("truncation").addEventListener("input", () => state.setEdit({ truncation: Number(input("truncation").value) }));
    for (const id of ["mix-on", "mix-seed", "mix-layers"]) {
      el(id).addEventListener("change", () => { state.checkpoint(); state.setEdit({ mixing: this.readMixing() }); });
    }
    el("commit").addEventListener("click", () => send(P.commit(state.edit)));
    document.addEventListener("keydown", (e) => {
      const inField = e.target instanceof HTMLInputElement && e.target.type !== "range";
      if (inField || !(e.ctrlKey || e.metaKey) || e.key.toLowerCase() !== "z") return;
      e.preventDefault();
      if (e.shiftKey) this.redo(); else this.undo();
    });
  }
}
