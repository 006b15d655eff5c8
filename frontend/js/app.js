// Wires the page to the server: session, upload, inversion, sliders, commit.

import { Client } from "./client.js";
import * as P from "./protocol.js";
import { RegionPanel } from "./region.js";
import { RestorePanel } from "./restore.js";
import { State, neutralEdit } from "./state.js";

/** @param {string} id @returns {any} */
const $ = (id) => document.getElementById(id);
const state = new State();
const token = new URLSearchParams(location.search).get("token") ?? sessionStorage.getItem("stylelens.token");
if (token) sessionStorage.setItem("stylelens.token", token);
/** @type {Client | null} */
let client = null;
let renderDirty = false;
let comparing = false;
let framesDrawn = 0;
let helloSeen = false;
const restore = new RestorePanel({
  state,
  send: (msg) => !!client?.send(msg),
  api,
  say,
  engine: () => $("engine").value,
  changed: () => updateButtons(),
});

const region = new RegionPanel({
  state,
  send: (msg) => !!client?.send(msg),
  api,
  say,
  changed: () => updateButtons(),
});

/** @param {string} path */
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

/** @param {string} path @param {RequestInit} [init] */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const r = await fetch(path, { ...init, headers });
  if (!r.ok) {
    let detail = `${r.status} ${r.statusText}`;
    try { detail = (await r.json()).detail ?? detail; } catch { /* not JSON */ }
    const err = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    /** @type {any} */ (err).status = r.status;
    throw err;
  }
  return r.json();
}

/** @param {string} text @param {"error" | "info"} [kind] */
function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}

const ERROR_HINTS = {
  busy: "Too many requests are waiting; try again in a moment.",
  oom: "The GPU ran out of memory.",
  no_target: "Upload a photo first.",
  no_latent: "Upload a photo and invert it, or pick a random face, before editing.",
};

// ---- session -------------------------------------------------------------------------------

/** @param {string | null} [model] start a new session with this model */
async function openSession(model = null) {
  let sid = model ? null : localStorage.getItem("stylelens.session");
  if (sid) {
    try { await api(`/api/sessions/${sid}`); } catch { sid = null; }
  }
  if (!sid) {
    const body = JSON.stringify(model ? { model } : {});
    sid = (await api("/api/sessions", { method: "POST", headers: { "Content-Type": "application/json" }, body })).id;
    localStorage.setItem("stylelens.session", sid);
  }
  state.session = sid;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  client = new Client(withToken(`${proto}://${location.host}/api/ws?session=${sid}`), {
    onEvent,
    onFrame,
    onStatus: (status) => {
      $("conn").textContent = { online: "online", reconnecting: "reconnecting…", refused: "refused", gone: "session gone" }[status];
      $("conn").classList.toggle("online", status === "online");
    },
  });
  client.connect();
}

// ---- server events ---------------------------------------------------------------------------

/** @param {any} e */
function onEvent(e) {
  switch (e.type) {
    case "hello": return onHello(e);
    case "queued":
      if (e.kind === "inversion") { state.inversionJob = e.job; setInverting(true); $("progress").textContent = `queued (${e.position} ahead)`; }
      return;
    case "started":
      if (e.kind === "inversion") {
        $("progress").textContent = e.init === "encoder" ? "the encoder's guess; refining…" : "started…";
        restore.started(e.note);
      }
      if (e.kind === "commit") say("Rendering at full resolution…", "info");
      return;
    case "progress": {
      const loss = e.losses.total ?? Object.values(e.losses)[0];
      $("bar").value = e.step / e.total;
      $("progress").textContent = `step ${e.step}/${e.total} · loss ${Number(loss).toFixed(4)} · ${e.resolution}px · ${e.elapsed.toFixed(1)} s`;
      return;
    }
    case "done": return onDone(e);
    case "cancelled":
      if (e.job === state.inversionJob) { setInverting(false); $("progress").textContent = `stopped at step ${e.step}`; }
      return;
    case "session_gone":
      localStorage.removeItem("stylelens.session");
      say("Your session has expired; reload the page to start a new one.");
      return;
    case "error":
      if (e.job && e.job === state.inversionJob) setInverting(false);
      say(ERROR_HINTS[e.code] ? `${ERROR_HINTS[e.code]} (${e.message})` : e.message);
      return;
    default:
      return;
  }
}

/** What each engine is, for the engine picker (docs/inversion.md has the measurements).
 * @type {Record<string, string>} */
const ENGINE_LABELS = {
  progressive: "progressive (L-BFGS, fastest)",
  "progressive-learned": "progressive, learned optimizer",
  learned: "learned optimizer (seed 001)",
  adam: "Adam (baseline)",
  projector: "projector (NVIDIA's schedule)",
};

/** @param {any} e */
function onHello(e) {
  state.model = e.model;
  state.limits = e.limits;
  state.directions = e.directions;
  state.upload = e.session.upload;
  state.latent = e.session.latent;
  $("model").textContent = `${e.model.name} · ${e.model.resolution}px · ${e.model.device}`;
  const picker = $("model-picker");
  picker.hidden = e.models.length < 2;
  picker.replaceChildren(...e.models.map((/** @type {any} */ m) => new Option(`${m.name} (${m.resolution}px)`, m.id)));
  picker.value = e.model.id;
  const engine = $("engine");
  const chosen = helloSeen ? engine.value : e.limits.default_engine;
  engine.replaceChildren(...e.model.engines.map((/** @type {string} */ n) => new Option(ENGINE_LABELS[n] ?? n, n)));
  if (e.model.engines.includes(chosen)) engine.value = chosen;
  $("steps").max = e.limits.max_steps;
  restore.setResolution(e.model.resolution);
  region.setResolution(e.model.resolution);
  restore.setTasks(e.model.restore ?? []);
  if (!helloSeen) $("steps").value = String(e.limits.default_steps);  // keep the user's on reconnect
  helloSeen = true;
  if (e.session.upload_url) $("target").src = withToken(e.session.upload_url);
  $("results").replaceChildren(...e.session.results.map(resultItem));
  buildSliders();
  updateButtons();
  if (state.latent) renderDirty = true;
  if (e.running) {  // a reload (or reconnect) while this session's inversion runs: it streams on
    state.inversionJob = e.running.job;
    $("steps").value = String(e.running.total);
    if (e.model.engines.includes(e.running.engine)) $("engine").value = e.running.engine;
    setInverting(true);
    $("progress").textContent = `resumed at step ${e.running.step}/${e.running.total}`;
  }
  showInterrupted(e.interrupted);
}

// An inversion that stopped before it finished (server restart, or the page was away too
// long): its last saved latent is offered as a result or as a point to continue from.
/** @type {any} */
let interrupted = null;

/** @param {any} offer hello.interrupted */
function showInterrupted(offer) {
  interrupted = offer ?? null;
  $("interrupted").hidden = !interrupted;
  if (!interrupted) return;
  const why = interrupted.reason === "restart" ? "The server stopped" : "This page was away too long";
  $("interrupted-text").textContent =
    `${why} while your inversion ran (${interrupted.engine}, step ${interrupted.step} of ${interrupted.total}). Its last saved latent is kept.`;
}

/** @param {any} e */
function onDone(e) {
  if (e.kind === "inversion") {
    setInverting(false);
    state.latent = e.latent;
    $("bar").value = 1;
    const psnr = e.metrics.psnr ? ` · PSNR ${e.metrics.psnr.toFixed(1)} dB` : "";
    $("progress").textContent = `done${psnr}`;
    renderDirty = true;
    if (e.result_url) {  // a restoration: its image is a result; the sliders edit its latent
      $("results").prepend(resultItem({ url: e.result_url, latent_url: e.latent_url }));
      say("Restored: download it below, or edit it with the sliders.", "info");
      showPicture(withToken(e.result_url), "restored (the sliders edit its W+ latent)");
      renderDirty = false;  // the restoration stays on show until an edit
    }
  } else if (e.kind === "random") {
    state.latent = e.latent;
    $("target").removeAttribute("src");
    renderDirty = true;
  } else if (e.kind === "use_latent") {
    state.latent = e.latent;
    say("");
    renderDirty = true;
  } else if (e.kind === "commit") {
    say("");
    $("results").prepend(resultItem({ url: e.result_url, latent_url: e.latent_url }));
  } else if (e.kind === "region") {
    region.presetFound({ mask_url: withToken(e.mask_url) }).catch((err) => say(`Cannot show the region: ${err.message}`));
  }
  updateButtons();
}

/** @param {import("./protocol.js").Frame} f */
async function onFrame(f) {
  const bitmap = await createImageBitmap(f.blob);
  const canvas = $("preview");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  framesDrawn += 1;
  canvas.dataset.frames = String(framesDrawn);
  $("preview-caption").textContent = f.kind === "inversion"
    ? (f.step === 0 ? "the encoder's guess (one pass)" : `preview · step ${f.step}`)
    : comparing ? "before (no edits)" : "edited";
}

/** Draw a picture (a restoration's result) in the preview.
 * @param {string} url @param {string} caption */
function showPicture(url, caption) {
  const img = new Image();
  img.onload = () => {
    const canvas = $("preview");
    canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
    $("preview-caption").textContent = caption;
  };
  img.src = url;
}

/** @param {{url: string, latent_url: string}} r */
function resultItem(r) {
  const li = document.createElement("li");
  const png = document.createElement("a");
  png.href = withToken(r.url); png.download = "stylelens.png"; png.textContent = "PNG";
  const lat = document.createElement("a");
  lat.href = withToken(r.latent_url); lat.download = "stylelens-latent.safetensors"; lat.textContent = "latent";
  li.append(png, lat);
  return li;
}

// ---- controls -------------------------------------------------------------------------------

/** @param {boolean} on */
function setInverting(on) {
  if (!on) state.inversionJob = null;
  $("stop").disabled = !on;
  $("accept").disabled = !on;
  updateButtons();
}

function updateButtons() {
  $("start").disabled = !state.upload || !!state.inversionJob;
  $("commit").disabled = !state.latent;
  $("undo").disabled = state.undoStack.length === 0;
  $("redo").disabled = state.redoStack.length === 0;
  restore.update();
  region.update();
}

// Undo/Redo take back the last change: a slider move or a mask stroke (state.js). The edit's
// region always follows the region paint on show.
const undo = () => { state.undo(); region.apply(); };
const redo = () => { state.redo(); region.apply(); };

// The keys that move a range input (a checkpoint each); Ctrl+Z on a focused slider is not one.
const SLIDER_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"]);

function buildSliders() {
  const named = $("sliders");
  const components = $("component-sliders");
  named.replaceChildren();
  components.replaceChildren();
  for (const d of state.directions) {
    const box = d.method === "sefa" || d.method === "ganspace" ? components : named;
    const id = `dir-${d.name}`;
    const wrap = document.createElement("div");
    wrap.className = "slider";
    wrap.innerHTML = `<label for="${id}"><span></span><output></output></label>
      <div class="line"><input id="${id}" type="range"><button type="button">reset</button></div>`;
    wrap.querySelector("span").textContent = `${d.name.replaceAll("_", " ")} (${d.method}, ${d.layers})`;
    const input = wrap.querySelector("input");
    Object.assign(input, { min: d.slider[0], max: d.slider[1], step: d.step / 10, value: 0 });
    input.dataset.name = d.name;
    input.addEventListener("pointerdown", () => state.checkpoint());
    input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => { if (SLIDER_KEYS.has(e.key) && !e.ctrlKey && !e.metaKey) state.checkpoint(); });
    input.addEventListener("input", () => {
      state.setEdit({ scales: { ...state.edit.scales, [d.name]: Number(input.value) } });
    });
    wrap.querySelector("button").addEventListener("click", () => {
      state.checkpoint();
      const scales = { ...state.edit.scales };
      delete scales[d.name];
      state.setEdit({ scales });
    });
    box.append(wrap);
  }
  $("components").hidden = components.children.length === 0;
  syncControls();
}

/** Make every control show state.edit (after undo/redo/reset). */
function syncControls() {
  for (const input of document.querySelectorAll("#sliders input, #component-sliders input")) {
    const v = state.edit.scales[input.dataset.name] ?? 0;
    input.value = String(v);
    input.closest(".slider").querySelector("output").textContent = Number(v).toFixed(2);
  }
  $("truncation").value = String(state.edit.truncation);
  $("truncation-out").textContent = state.edit.truncation.toFixed(2);
  const mix = state.edit.mixing;
  $("mix-on").checked = !!mix;
  if (mix) { $("mix-seed").value = String(mix.seed); $("mix-layers").value = mix.layers; }
}

state.subscribe(() => { syncControls(); updateButtons(); renderDirty = true; });

function readMixing() {
  return $("mix-on").checked
    ? { seed: Math.max(0, Number($("mix-seed").value) | 0), layers: $("mix-layers").value }
    : null;
}

// At most one render request per animation frame; the server keeps only the latest anyway.
function frameLoop() {
  if (renderDirty && state.latent && client) {
    const edit = comparing ? neutralEdit() : state.edit;
    if (client.send(P.renderEdit(edit))) renderDirty = false;
  }
  requestAnimationFrame(frameLoop);
}

/** @param {File} file */
async function uploadFile(file) {
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    say(`That file is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${(state.limits.max_upload_bytes / 1e6).toFixed(0)} MB.`);
    return;
  }
  say("Uploading…", "info");
  const form = new FormData();
  form.append("file", file);
  try {
    const r = await api(`/api/sessions/${state.session}/uploads`, { method: "POST", body: form });
    say("");
    state.upload = r.upload;
    $("target").src = withToken(r.crop_url);
    $("upload-note").textContent = r.aligned ? `aligned (${r.faces} face${r.faces === 1 ? "" : "s"} found)` : r.note;
    showPhotoNotice(r.photo_notice);
    if (r.aligned) $("manual").hidden = true; else showManualCrop(r.original_url);
    updateButtons();
  } catch (err) {
    const e = /** @type {any} */ (err);
    const what = e.status === 413 ? "That file is too large." : e.status === 415 ? "That is not an image we can read." : "";
    say(`${what} ${e.message}`.trim());
  }
}

// The server's word on photographs for a model that cannot represent them (the SynthFaces one).
/** @param {string | null | undefined} text */
function showPhotoNotice(text) {
  let box = document.getElementById("photo-notice");
  if (!box) {
    box = document.createElement("p");
    box.id = "photo-notice";
    box.className = "note";
    box.setAttribute("role", "note");
    $("upload-note").after(box);
  }
  box.textContent = text || "";
  box.hidden = !text;
}

// Manual square crop, offered when no face was found (or alignment is not installed).
/** @type {HTMLImageElement | null} */
let cropPhoto = null;

/** @param {string} url */
function showManualCrop(url) {
  const img = new Image();
  img.onload = () => {
    cropPhoto = img;
    const side = Math.min(img.naturalWidth, img.naturalHeight);
    Object.assign($("crop-size"), { max: side, value: side });
    updateCropRanges();
    $("crop-x").value = String(Math.floor((img.naturalWidth - side) / 2));
    $("crop-y").value = String(Math.floor((img.naturalHeight - side) / 2));
    drawCrop();
    $("manual").hidden = false;
  };
  img.src = withToken(url);
}

function updateCropRanges() {
  if (!cropPhoto) return;
  const size = Number($("crop-size").value);
  $("crop-x").max = String(cropPhoto.naturalWidth - size);
  $("crop-y").max = String(cropPhoto.naturalHeight - size);
}

function drawCrop() {
  if (!cropPhoto) return;
  const c = $("crop-canvas");
  const scale = 256 / Math.max(cropPhoto.naturalWidth, cropPhoto.naturalHeight);
  c.width = Math.round(cropPhoto.naturalWidth * scale);
  c.height = Math.round(cropPhoto.naturalHeight * scale);
  const ctx = c.getContext("2d");
  ctx.drawImage(cropPhoto, 0, 0, c.width, c.height);
  const [x, y, s] = ["crop-x", "crop-y", "crop-size"].map((id) => Number($(id).value) * scale);
  ctx.strokeStyle = "#ff0";
  ctx.lineWidth = 2;
  ctx.strokeRect(x, y, s, s);
}

async function useCrop() {
  const box = { left: Number($("crop-x").value), top: Number($("crop-y").value), size: Number($("crop-size").value) };
  try {
    const r = await api(`/api/sessions/${state.session}/uploads/${state.upload}/crop`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(box),
    });
    state.upload = r.upload;
    $("target").src = withToken(r.crop_url);
    $("upload-note").textContent = "your square is used";
    say("");
  } catch (err) {
    say(/** @type {Error} */ (err).message);
  }
}

/** @param {string} model */
async function switchModel(model) {
  client?.close();
  Object.assign(state, { upload: null, latent: null, inversionJob: null, undoStack: [], redoStack: [] });
  state.edit = neutralEdit();
  region.reset();
  $("target").removeAttribute("src");
  $("results").replaceChildren();
  $("manual").hidden = true;
  $("upload-note").textContent = "";
  showPhotoNotice(null);
  $("progress").textContent = "";
  $("bar").value = 0;
  const canvas = $("preview");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  await openSession(model);
}

function wire() {
  $("model-picker").addEventListener("change", (/** @type {any} */ e) => {
    switchModel(e.target.value).catch((err) => say(`Cannot switch model: ${err.message}`));
  });
  for (const id of ["crop-size", "crop-x", "crop-y"]) {
    $(id).addEventListener("input", () => { updateCropRanges(); drawCrop(); });
  }
  $("crop-use").addEventListener("click", useCrop);
  $("file").addEventListener("change", (/** @type {any} */ e) => { if (e.target.files[0]) uploadFile(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (/** @type {DragEvent} */ e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (/** @type {DragEvent} */ e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files[0];
    if (f) uploadFile(f);
  });
  $("random-form").addEventListener("submit", (/** @type {Event} */ e) => {
    e.preventDefault();
    client?.send(P.randomFace(Math.max(0, Number($("seed").value) | 0)));
  });
  $("invert-form").addEventListener("submit", (/** @type {Event} */ e) => {
    e.preventDefault();
    const steps = Number($("steps").value) | 0;
    if (state.limits && (steps < 1 || steps > state.limits.max_steps)) {
      say(`Steps must be between 1 and ${state.limits.max_steps}.`);
      return;
    }
    say("");
    client?.send(P.startInversion($("engine").value, steps, state.upload));
  });
  $("stop").addEventListener("click", () => state.inversionJob && client?.send(P.cancel(state.inversionJob)));
  $("accept").addEventListener("click", () => state.inversionJob && client?.send(P.accept(state.inversionJob)));
  $("interrupted-use").addEventListener("click", () => {
    if (interrupted && client?.send(P.useLatent(interrupted.latent))) showInterrupted(null);
  });
  $("interrupted-resume").addEventListener("click", () => {
    if (!interrupted) return;
    const { engine, total, step, upload, latent } = interrupted;
    const engines = state.model?.engines ?? [];
    const use = engines.includes(engine) ? engine : $("engine").value;
    if (client?.send(P.startInversion(use, Math.max(1, total - step), upload, latent))) showInterrupted(null);
  });
  $("interrupted-dismiss").addEventListener("click", () => showInterrupted(null));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("reset-all").addEventListener("click", () => { state.checkpoint(); state.setEdit({ ...neutralEdit(), region: region.region() }); });
  const compare = $("compare");
  const setCompare = (/** @type {boolean} */ on) => { comparing = on; compare.setAttribute("aria-pressed", String(on)); renderDirty = true; };
  compare.addEventListener("click", () => setCompare(!comparing));
  $("truncation").addEventListener("pointerdown", () => state.checkpoint());
  $("truncation").addEventListener("input", () => state.setEdit({ truncation: Number($("truncation").value) }));
  for (const id of ["mix-on", "mix-seed", "mix-layers"]) {
    $(id).addEventListener("change", () => { state.checkpoint(); state.setEdit({ mixing: readMixing() }); });
  }
  $("commit").addEventListener("click", () => client?.send(P.commit(state.edit)));
  document.addEventListener("keydown", (e) => {
    const inField = e.target instanceof HTMLInputElement && e.target.type !== "range";
    if (inField || !(e.ctrlKey || e.metaKey) || e.key.toLowerCase() !== "z") return;
    e.preventDefault();
    if (e.shiftKey) redo(); else undo();
  });
}

wire();
requestAnimationFrame(frameLoop);
openSession().catch((err) => say(`Cannot reach the server: ${err.message}`));
