// @ts-check
// The page: one state object (state.js), the panels that read and write it (panels/), and
// the websocket client (client.js). This module opens the session, hands the server's events
// to the panels and runs the render loop; the panels do the rest.

import { Client } from "./client.js";
import { el, say, select } from "./dom.js";
import { EditPanel } from "./panels/edit.js";
import { InputPanel } from "./panels/input.js";
import { InversionPanel } from "./panels/inversion.js";
import { ModelsPanel } from "./panels/models.js";
import { PreviewView } from "./panels/preview.js";
import { RegionPanel } from "./panels/region.js";
import { RestorePanel } from "./panels/restore.js";
import { ResultsPanel } from "./panels/results.js";
import { api, postJson, withToken } from "./server.js";
import { State } from "./state.js";

/**
 * @typedef {import("./protocol.js").ServerEvent} ServerEvent
 * @typedef {import("./protocol.js").Hello} Hello
 * @typedef {import("./protocol.js").Done} Done
 * @typedef {import("./protocol.js").Frame} Frame
 * @typedef {import("./protocol.js").ModelChoice} ModelChoice
 */

/** @type {Record<string, string>} */
const ERROR_HINTS = {
  busy: "Too many requests are waiting; try again in a moment.",
  oom: "The GPU ran out of memory.",
  no_target: "Upload a photo first.",
  no_latent: "Upload a photo and invert it, or pick a random face, before editing.",
};

class Page {
  constructor() {
    this.state = new State();
    /** @type {Client | null} */ this.client = null;
    /** @type {import("./state.js").Ctx} */
    const ctx = { state: this.state, send: (msg) => !!this.client?.send(msg) };
    this.preview = new PreviewView();
    this.results = new ResultsPanel();
    this.input = new InputPanel(ctx);
    this.inversion = new InversionPanel(ctx);
    this.restore = new RestorePanel(ctx, () => this.inversion.engine);
    this.region = new RegionPanel(ctx);
    this.edit = new EditPanel(ctx, {
      region: () => this.region.region(),
      regionFollow: () => this.region.apply(),
    });
    this.models = new ModelsPanel(ctx, {
      use: (id) => { this.switchModel(id).catch((err) => say(`Cannot switch model: ${err.message}`)); },
      served: (models) => this.showModels(models),
    });
    this.state.subscribe(() => this.update());
    select("model-picker").addEventListener("change", (e) => {
      const id = /** @type {HTMLSelectElement} */ (e.target).value;
      this.switchModel(id).catch((err) => say(`Cannot switch model: ${err.message}`));
    });
    el("compare").addEventListener("click", () => this.update());
  }

  update() {
    this.inversion.update();
    this.edit.update();
    this.restore.update();
    this.region.update();
  }

  /** Open this tab's session (or a new one with ``model``) and connect to it.
   * @param {string | null} [model] */
  async openSession(model = null) {
    let sid = model ? null : localStorage.getItem("stylelens.session");
    if (sid) {
      try { await api(`/api/sessions/${sid}`); } catch { sid = null; }
    }
    if (!sid) {
      sid = /** @type {string} */ ((await postJson("/api/sessions", model ? { model } : {})).id);
      localStorage.setItem("stylelens.session", sid);
    }
    this.state.session = sid;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.client = new Client(withToken(`${proto}://${location.host}/api/ws?session=${sid}`), {
      onEvent: (e) => this.onEvent(e),
      onFrame: (f) => this.onFrame(f),
      onStatus: (status) => {
        const conn = el("conn");
        conn.textContent = { online: "online", reconnecting: "reconnecting…", refused: "refused", gone: "session gone" }[status];
        conn.classList.toggle("online", status === "online");
      },
    });
    this.client.connect();
  }

  /** Another model: a new session with it; nothing of the old one is kept on the page.
   * @param {string} model */
  async switchModel(model) {
    this.client?.close();
    this.state.reset();
    this.input.reset();
    this.inversion.reset();
    this.region.reset();
    this.results.clear();
    this.preview.clear();
    await this.openSession(model);
  }

  // ---- server events -------------------------------------------------------------------------

  /** @param {ServerEvent} e */
  onEvent(e) {
    switch (e.type) {
      case "hello": return this.onHello(e);
      case "queued":
        if (e.kind === "inversion") this.inversion.queued(e);
        return;
      case "started":
        if (e.kind === "inversion") {
          this.inversion.started(e);
          this.restore.started(e.note);
        }
        if (e.kind === "commit") say("Rendering at full resolution…", "info");
        return;
      case "progress": return this.inversion.progress(e);
      case "done": return this.onDone(e);
      case "cancelled": return this.inversion.cancelled(e);
      case "session_gone":
        localStorage.removeItem("stylelens.session");
        say("Your session has expired; reload the page to start a new one.");
        return;
      case "install_progress": return this.models.progress(e);
      case "install_done": return this.models.done(e);
      case "install_failed": return this.models.failed(e);
      case "error":
        this.inversion.failed(e);
        say(ERROR_HINTS[e.code] ? `${ERROR_HINTS[e.code]} (${e.message})` : e.message);
        return;
      default:
        return;
    }
  }

  /** @param {Hello} e */
  onHello(e) {
    const { state } = this;
    state.hello(e);
    el("model").textContent = `${e.model.name} · ${e.model.resolution}px · ${e.model.device}`;
    this.showModels(e.models);
    this.restore.setResolution(e.model.resolution);
    this.restore.setTasks(e.model.restore ?? []);
    this.region.setResolution(e.model.resolution);
    this.input.hello(e);
    this.inversion.hello(e);
    this.results.set(e.session.results);
    this.edit.buildSliders();
    this.edit.invalidate();
    state.changed();
  }

  /** The model picker: every model served (``hello.models``, or after an install), the
   * session's selected.
   * @param {ModelChoice[]} models */
  showModels(models) {
    this.state.models = models;
    const picker = select("model-picker");
    picker.hidden = models.length < 2;
    picker.replaceChildren(...models.map((m) => new Option(`${m.name} (${m.resolution}px)`, m.id)));
    if (this.state.model) picker.value = this.state.model.id;
  }

  /** @param {Done} e */
  onDone(e) {
    const { state } = this;
    if (e.kind === "inversion") {
      state.latent = e.latent;
      this.inversion.done(e);
      if (e.result_url && e.latent_url) {  // a restoration: its image is a result; the sliders edit its latent
        this.results.add({ url: e.result_url, latent_url: e.latent_url });
        say("Restored: download it below, or edit it with the sliders.", "info");
        this.preview.picture(withToken(e.result_url), "restored (the sliders edit its W+ latent)");
        this.edit.hold();  // the restoration stays on show until an edit
      }
    } else if (e.kind === "random") {
      state.latent = e.latent;
      this.input.randomFace();
    } else if (e.kind === "use_latent") {
      state.latent = e.latent;
      say("");
    } else if (e.kind === "commit") {
      say("");
      if (e.result_url && e.latent_url) this.results.add({ url: e.result_url, latent_url: e.latent_url });
    } else if (e.kind === "region" && e.mask_url) {
      this.region.presetFound({ mask_url: withToken(e.mask_url) })
        .catch((/** @type {Error} */ err) => say(`Cannot show the region: ${err.message}`));
    }
    state.changed();
  }

  /** @param {Frame} f */
  onFrame(f) {
    const caption = f.kind === "inversion"
      ? (f.step === 0 ? "the encoder's guess (one pass)" : `preview · step ${f.step}`)
      : this.edit.caption();
    this.preview.draw(f.blob, caption);
  }

  /** At most one render request per animation frame; the server keeps only the latest anyway. */
  loop() {
    this.edit.tick();
    requestAnimationFrame(() => this.loop());
  }
}

const page = new Page();
page.loop();
page.openSession().catch((err) => say(`Cannot reach the server: ${err.message}`));
