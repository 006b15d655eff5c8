// @ts-check
// 2. Inversion: the engine and steps, start / stop / accept, the progress line, and the offer
// of an inversion that stopped before it finished (server restart, or the page away too long).

import { button, el, input, say, select } from "../dom.js";
import * as P from "../protocol.js";

/** What each engine is, for the engine picker (docs/inversion.md has the measurements).
 * @type {Record<string, string>} */
const ENGINE_LABELS = {
  progressive: "progressive (L-BFGS, fastest)",
  "progressive-learned": "progressive, learned optimizer",
  learned: "learned optimizer (seed 001)",
  adam: "Adam (baseline)",
  projector: "projector (NVIDIA's schedule)",
};

export class InversionPanel {
  /** @param {import("../state.js").Ctx} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** Whether a hello was seen: a reconnect keeps the user's engine and steps. */
    this.helloSeen = false;
    /** @type {P.Interrupted | null} */ this.interrupted = null;
    this.wire();
  }

  get engine() { return select("engine").value; }

  /** @param {P.Hello} e */
  hello(e) {
    const engine = select("engine");
    const chosen = this.helloSeen ? engine.value : e.limits.default_engine;
    engine.replaceChildren(...e.model.engines.map((n) => new Option(ENGINE_LABELS[n] ?? n, n)));
    if (e.model.engines.includes(chosen)) engine.value = chosen;
    const steps = input("steps");
    steps.max = String(e.limits.max_steps);
    if (!this.helloSeen) steps.value = String(e.limits.default_steps);  // keep the user's on reconnect
    this.helloSeen = true;
    if (e.running) {  // a reload (or reconnect) while this session's inversion runs: it streams on
      this.ctx.state.inversionJob = e.running.job;
      steps.value = String(e.running.total);
      if (e.model.engines.includes(e.running.engine)) engine.value = e.running.engine;
      this.setInverting(true);
      el("progress").textContent = `resumed at step ${e.running.step}/${e.running.total}`;
    }
    this.showInterrupted(e.interrupted);
  }

  reset() {
    el("progress").textContent = "";
    el("bar", HTMLProgressElement).value = 0;
    this.showInterrupted(null);
  }

  /** @param {boolean} on */
  setInverting(on) {
    if (!on) this.ctx.state.inversionJob = null;
    button("stop").disabled = !on;
    button("accept").disabled = !on;
    this.ctx.state.changed();
  }

  update() {
    const { state } = this.ctx;
    button("start").disabled = !state.upload || !!state.inversionJob;
  }

  // ---- events of the session's inversion --------------------------------------------------

  /** @param {P.Queued} e */
  queued(e) {
    this.ctx.state.inversionJob = e.job;
    this.setInverting(true);
    el("progress").textContent = `queued (${e.position} ahead)`;
  }

  /** @param {P.Started} e */
  started(e) {
    el("progress").textContent = e.init === "encoder" ? "the encoder's guess; refining…" : "started…";
  }

  /** @param {P.Progress} e */
  progress(e) {
    const loss = e.losses.total ?? Object.values(e.losses)[0];
    el("bar", HTMLProgressElement).value = e.step / e.total;
    el("progress").textContent = `step ${e.step}/${e.total} · loss ${Number(loss).toFixed(4)} · ${e.resolution}px · ${e.elapsed.toFixed(1)} s`;
  }

  /** @param {P.Done} e */
  done(e) {
    this.setInverting(false);
    el("bar", HTMLProgressElement).value = 1;
    const psnr = e.metrics.psnr ? ` · PSNR ${e.metrics.psnr.toFixed(1)} dB` : "";
    el("progress").textContent = `done${psnr}`;
  }

  /** @param {P.Cancelled} e */
  cancelled(e) {
    if (e.job !== this.ctx.state.inversionJob) return;
    this.setInverting(false);
    el("progress").textContent = `stopped at step ${e.step}`;
  }

  /** @param {P.ErrorEvent} e */
  failed(e) {
    if (e.job && e.job === this.ctx.state.inversionJob) this.setInverting(false);
  }

  /** @param {P.Interrupted | null} offer hello.interrupted */
  showInterrupted(offer) {
    this.interrupted = offer ?? null;
    el("interrupted").hidden = !this.interrupted;
    if (!this.interrupted) return;
    const { reason, engine, step, total } = this.interrupted;
    const why = reason === "restart" ? "The server stopped" : "This page was away too long";
    el("interrupted-text").textContent =
      `${why} while your inversion ran (${engine}, step ${step} of ${total}). Its last saved latent is kept.`;
  }

  wire() {
    const { state, send } = this.ctx;
    el("invert-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const steps = Number(input("steps").value) | 0;
      if (state.limits && (steps < 1 || steps > state.limits.max_steps)) {
        say(`Steps must be between 1 and ${state.limits.max_steps}.`);
        return;
      }
      say("");
      send(P.startInversion(this.engine, steps, state.upload));
    });
    el("stop").addEventListener("click", () => { if (state.inversionJob) send(P.cancel(state.inversionJob)); });
    el("accept").addEventListener("click", () => { if (state.inversionJob) send(P.accept(state.inversionJob)); });
    el("interrupted-use").addEventListener("click", () => {
      if (this.interrupted && send(P.useLatent(this.interrupted.latent))) this.showInterrupted(null);
    });
    el("interrupted-resume").addEventListener("click", () => {
      if (!this.interrupted) return;
      const { engine, total, step, upload, latent } = this.interrupted;
      const engines = state.model?.engines ?? [];
      const use = engines.includes(engine) ? engine : this.engine;
      if (send(P.startInversion(use, Math.max(1, total - step), upload, latent))) this.showInterrupted(null);
    });
    el("interrupted-dismiss").addEventListener("click", () => this.showInterrupted(null));
  }
}
