// @ts-check
// The Models dialog: the installed models (their cards), what the registry offers, and
// installs (from the registry, or of a checkpoint the user has), with the server's progress.
// Installs belong to the server: their events reach every page, and a page that opens the
// dialog later finds the install under way (GET /api/models).

import { button, el, input, say } from "../dom.js";
import { HttpError, api, del, postJson, postRaw } from "../server.js";

/**
 * @typedef {import("../protocol.js").ModelsInfo} ModelsInfo
 * @typedef {import("../protocol.js").InstalledModel} InstalledModel
 * @typedef {import("../protocol.js").RegistryChoice} RegistryChoice
 * @typedef {import("../protocol.js").InstallProgress} InstallProgress
 * @typedef {import("../protocol.js").InstallDone} InstallDone
 * @typedef {import("../protocol.js").InstallFailed} InstallFailed
 * @typedef {import("../protocol.js").ModelChoice} ModelChoice
 * @typedef {{use: (id: string) => void, served: (models: ModelChoice[]) => void}} Hooks
 */

const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Bytes for people: "2 GB", "295 MB", "7.3 MB", "43 kB". @param {number} n */
export function size(n) {
  if (n >= 1e9) return `${Number((n / 1e9).toFixed(1))} GB`;
  if (n >= 1e8) return `${Math.round(n / 1e6)} MB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

/** An element with text. @param {string} tag @param {string} content @param {string} [cls] */
function text(tag, content, cls) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (cls) node.className = cls;
  return node;
}

/** A model id from a file name ("Network-Snapshot 0100.pkl" -> "network-snapshot-0100").
 * @param {string} name */
export function idFromFile(name) {
  return name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "").slice(0, 64);
}

export class ModelsPanel {
  /** @param {import("../state.js").Ctx} ctx @param {Hooks} hooks */
  constructor(ctx, hooks) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.dialog = el("models", HTMLDialogElement);
    /** @type {ModelsInfo | null} */ this.info = null;
    /** The install under way (from the events, or the listing when the dialog opened). */
    /** @type {InstallProgress | null} */ this.install = null;
    /** What this page started (others' installs are shown, their endings not announced). */
    /** @type {string | null} */ this.mine = null;
    /** The id field holds the id made from the file's name (not one the user typed). */
    this.autoId = true;
    this.wire();
  }

  async open() {
    if (!this.dialog.open) this.dialog.showModal();
    await this.refresh();
  }

  async refresh() {
    try {
      this.info = /** @type {ModelsInfo} */ (await api("/api/models"));
    } catch (err) {
      this.status(`Cannot list the models: ${/** @type {Error} */ (err).message}`, "error");
      return;
    }
    this.install = this.info.install;
    this.render();
  }

  /** @param {string} message @param {"error" | "info"} [kind] */
  status(message, kind = "info") {
    const box = el("models-status");
    box.textContent = message;
    box.className = kind === "error" ? "note error" : "note";
  }

  // ---- server events (every page gets them) ----------------------------------------------

  /** @param {InstallProgress} e */
  progress(e) {
    this.install = e;
    this.showProgress();
    this.badge();
    this.renderButtons();
  }

  /** @param {InstallDone} e */
  done(e) {
    this.install = null;
    this.badge();
    const bar = el("models-bar", HTMLProgressElement);
    bar.max = 1;
    bar.value = 1;
    el("models-progress-text").textContent = `${e.name}: installed.`;
    button("models-cancel").hidden = true;
    this.status(e.message);
    this.hooks.served(e.models);
    if (this.dialog.open) this.refresh();
    else if (this.mine === e.name) say(e.message, "info");
    this.mine = null;
  }

  /** @param {InstallFailed} e */
  failed(e) {
    this.install = null;
    this.badge();
    el("models-progress").hidden = true;
    const message = e.cancelled ? e.message : `Not installed: ${e.message}`;
    this.status(message, e.cancelled ? "info" : "error");
    if (this.dialog.open) this.refresh();
    else if (this.mine === e.name && !e.cancelled) say(message);
    this.mine = null;
  }

  /** The header's button says that an install runs, dialog open or not. */
  badge() {
    const e = this.install;
    const open = button("models-open");
    if (!e) { open.textContent = "Models"; return; }
    const moving = (e.stage === "download" || e.stage === "upload") && e.total;
    open.textContent = moving ? `Models · ${Math.floor((100 * e.bytes) / (e.total || 1))}%` : "Models · installing…";
  }

  // ---- drawing ---------------------------------------------------------------------------

  render() {
    const info = this.info;
    if (!info) return;
    const current = this.ctx.state.model?.id;
    el("models-installed").replaceChildren(...info.installed.map((m) => this.installedCard(m, current)));
    /** @type {HTMLElement[]} */
    const offered = info.registry.map((r) => this.registryCard(r));
    if (info.registry_error) offered.push(text("li", `The registry cannot be read: ${info.registry_error}`, "note error"));
    el("models-registry").replaceChildren(...offered);
    const refusal = el("models-refusal");
    refusal.textContent = info.refusal ?? "";
    refusal.hidden = !info.refusal;
    el("models-limit").textContent = `At most ${size(info.max_checkpoint_bytes)}.`;
    if (this.install) this.showProgress();
    this.badge();
    this.renderButtons();
  }

  /** @param {InstalledModel} m @param {string | undefined} current */
  installedCard(m, current) {
    const li = document.createElement("li");
    li.className = "card";
    li.dataset.model = m.id;
    const about = document.createElement("div");
    about.append(
      text("h4", `${m.name} · ${m.resolution} px`),
      text("p", m.purpose, "purpose"),
      text("p", [m.id, `${m.directions} direction${m.directions === 1 ? "" : "s"}`,
        m.served ? "served" : "installed, not served"].join(" · "), "meta"),
      text("p", m.license, "licence"),
    );
    if (m.description) about.title = m.description;
    /** @type {HTMLElement} */
    let action;
    if (m.id === current) {
      action = text("span", "in use", "badge online");
    } else if (m.served) {
      action = text("button", "Use");
      action.addEventListener("click", () => { this.dialog.close(); this.hooks.use(m.id); });
      action.setAttribute("aria-label", `use ${m.name} (a new session)`);
    } else {
      action = text("button", "Load");
      action.dataset.gate = "load";
      action.setAttribute("aria-label", `load ${m.name} into the server`);
      const load = /** @type {HTMLButtonElement} */ (action);
      load.addEventListener("click", () => this.load(m.id, load));
    }
    li.append(about, action);
    return li;
  }

  /** @param {RegistryChoice} r */
  registryCard(r) {
    const li = document.createElement("li");
    li.className = "card";
    li.dataset.entry = r.name;
    const about = document.createElement("div");
    const download = `${r.size_exact ? "" : "~"}${size(r.size)} download`;
    about.append(
      text("h4", r.name),
      text("p", r.purpose, "purpose"),
      text("p", `${download} · ${r.title}`, "meta"),
      text("p", r.license, "licence"),
    );
    const label = r.installed ? "Installed" : r.needs.length ? `Needs ${r.needs.join(", ")}` : "Install";
    const install = text("button", label);
    install.dataset.gate = "install";
    install.dataset.blocked = r.installed || r.needs.length ? "1" : "";
    if (r.needs.length) install.title = `install ${r.needs.join(", ")} first`;
    install.setAttribute("aria-label", `install ${r.name} (${download})`);
    install.addEventListener("click", () => this.installEntry(r.name));
    li.append(about, install);
    return li;
  }

  /** Buttons that install are off while an install runs; those that install or load are
   * off on a server that refuses (the dialog says why). */
  renderButtons() {
    const can = !!this.info?.can_install;
    const free = can && !this.install;
    for (const b of this.dialog.querySelectorAll("button[data-gate]")) {
      const btn = /** @type {HTMLButtonElement} */ (b);
      btn.disabled = btn.dataset.blocked === "1" || !(btn.dataset.gate === "load" ? can : free);
    }
    button("models-upload").disabled = !free;
  }

  showProgress() {
    const e = this.install;
    if (!e) return;
    el("models-progress").hidden = false;
    const bar = el("models-bar", HTMLProgressElement);
    const moving = e.stage === "download" || e.stage === "upload";
    if (moving && e.total) {
      bar.max = e.total;
      bar.value = Math.min(e.bytes, e.total);
    } else if (moving) {
      bar.removeAttribute("value");  // unknown size: an indeterminate bar
    } else {
      bar.max = 1;
      bar.value = 1;  // the bytes are here; the rest is said in words
    }
    const amount = e.total ? `${size(e.bytes)} of ${size(e.total)}` : size(e.bytes);
    const words = {
      upload: `Uploading ${e.name}: ${amount}`,
      download: `Downloading ${e.name}: ${amount}`,
      convert: `Installing ${e.name}: ${e.message}`,
      load: `Loading ${e.name} into the server…`,
    }[e.stage];
    el("models-progress-text").textContent = words;
    button("models-cancel").hidden = e.stage !== "download";
  }

  // ---- actions ---------------------------------------------------------------------------

  /** @param {string} name */
  async installEntry(name) {
    this.status(`Starting ${name}…`);
    this.mine = name;
    try {
      this.progress(await postJson("/api/models/install", { name }));
    } catch (err) {
      this.status(/** @type {Error} */ (err).message, "error");
    }
  }

  /** @param {string} id @param {HTMLButtonElement} btn */
  async load(id, btn) {
    btn.disabled = true;
    this.status(`Loading ${id} into the server…`);
    try {
      const r = await postJson(`/api/models/${encodeURIComponent(id)}/load`, {});
      this.hooks.served(r.models);
      this.status(`${id} is ready: choose it in the model list, or press Use.`);
      await this.refresh();
    } catch (err) {
      btn.disabled = false;
      this.status(/** @type {Error} */ (err).message, "error");
    }
  }

  async cancel() {
    try {
      await del("/api/models/install");
    } catch (err) {
      this.status(/** @type {Error} */ (err).message, "error");
    }
  }

  async uploadFile() {
    const file = input("models-file").files?.[0];
    const id = input("models-id").value.trim();
    if (!file) { this.status("Choose a checkpoint file (.pkl or .pt) first.", "error"); return; }
    if (!ID_PATTERN.test(id)) {
      this.status("The id: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit.", "error");
      return;
    }
    const limit = this.info?.max_checkpoint_bytes ?? Infinity;
    if (file.size > limit) {
      this.status(`That file is ${size(file.size)}; this server takes at most ${size(limit)}.`, "error");
      return;
    }
    this.status(`Uploading ${file.name}…`);
    this.mine = id;
    const query = `id=${encodeURIComponent(id)}&filename=${encodeURIComponent(file.name)}`;
    try {
      await postRaw(`/api/models/upload?${query}`, file);
      this.status(`${file.name} is uploaded; converting it as ${id}…`);
    } catch (err) {  // the server's sentence says what and why (415, 409, 413, ...)
      const status = err instanceof HttpError ? ` (${err.status})` : "";
      this.status(`Not installed: ${/** @type {Error} */ (err).message}${status}`, "error");
    }
  }

  wire() {
    button("models-open").addEventListener("click", () => { this.open(); });
    button("models-close").addEventListener("click", () => this.dialog.close());
    button("models-cancel").addEventListener("click", () => { this.cancel(); });
    const file = input("models-file");
    const id = input("models-id");
    id.addEventListener("input", () => { this.autoId = !id.value; });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      if (f && (this.autoId || !id.value)) id.value = idFromFile(f.name);
    });
    el("models-upload-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.uploadFile();
    });
  }
}
