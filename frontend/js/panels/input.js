// @ts-check
// 1. A face: upload (file picker or drop), the aligned target, a manual square crop when no
// face was found, the server's notice on photographs, or a random face of the model.

import { canvas, context2d, el, input, say } from "../dom.js";
import * as P from "../protocol.js";
import { HttpError, postFile, postJson, withToken } from "../server.js";

export class InputPanel {
  /** @param {import("../state.js").Ctx} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** The photo being cropped by hand (when no face was found). */
    /** @type {HTMLImageElement | null} */ this.cropPhoto = null;
    this.wire();
  }

  /** @param {P.Hello} e */
  hello(e) {
    if (e.session.upload_url) el("target", HTMLImageElement).src = withToken(e.session.upload_url);
  }

  reset() {
    el("target").removeAttribute("src");
    el("manual").hidden = true;
    el("upload-note").textContent = "";
    this.showPhotoNotice(null);
  }

  /** A random face replaces the target (there is no photo behind it). */
  randomFace() { el("target").removeAttribute("src"); }

  /** @param {File} file */
  async upload(file) {
    const { state } = this.ctx;
    if (state.limits && file.size > state.limits.max_upload_bytes) {
      say(`That file is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${(state.limits.max_upload_bytes / 1e6).toFixed(0)} MB.`);
      return;
    }
    say("Uploading…", "info");
    try {
      const r = await postFile(`/api/sessions/${state.session}/uploads`, file);
      say("");
      state.upload = r.upload;
      el("target", HTMLImageElement).src = withToken(r.crop_url);
      el("upload-note").textContent = r.aligned ? `aligned (${r.faces} face${r.faces === 1 ? "" : "s"} found)` : r.note;
      this.showPhotoNotice(r.photo_notice);
      if (r.aligned) el("manual").hidden = true; else this.showManualCrop(r.original_url);
      state.changed();
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 0;
      const what = status === 413 ? "That file is too large." : status === 415 ? "That is not an image we can read." : "";
      say(`${what} ${/** @type {Error} */ (err).message}`.trim());
    }
  }

  /** The server's word on photographs for a model that cannot represent them (SynthFaces).
   * @param {string | null | undefined} text */
  showPhotoNotice(text) {
    let box = document.getElementById("photo-notice");
    if (!box) {
      box = document.createElement("p");
      box.id = "photo-notice";
      box.className = "note";
      box.setAttribute("role", "note");
      el("upload-note").after(box);
    }
    box.textContent = text || "";
    box.hidden = !text;
  }

  // ---- the manual square crop, offered when no face was found ---------------------------

  /** @param {string} url */
  showManualCrop(url) {
    const img = new Image();
    img.onload = () => {
      this.cropPhoto = img;
      const side = Math.min(img.naturalWidth, img.naturalHeight);
      Object.assign(input("crop-size"), { max: side, value: side });
      this.updateCropRanges();
      input("crop-x").value = String(Math.floor((img.naturalWidth - side) / 2));
      input("crop-y").value = String(Math.floor((img.naturalHeight - side) / 2));
      this.drawCrop();
      el("manual").hidden = false;
    };
    img.src = withToken(url);
  }

  updateCropRanges() {
    if (!this.cropPhoto) return;
    const size = Number(input("crop-size").value);
    input("crop-x").max = String(this.cropPhoto.naturalWidth - size);
    input("crop-y").max = String(this.cropPhoto.naturalHeight - size);
  }

  drawCrop() {
    const photo = this.cropPhoto;
    if (!photo) return;
    const c = canvas("crop-canvas");
    const scale = 256 / Math.max(photo.naturalWidth, photo.naturalHeight);
    c.width = Math.round(photo.naturalWidth * scale);
    c.height = Math.round(photo.naturalHeight * scale);
    const g = context2d(c);
    g.drawImage(photo, 0, 0, c.width, c.height);
    const [x, y, s] = ["crop-x", "crop-y", "crop-size"].map((id) => Number(input(id).value) * scale);
    g.strokeStyle = "#ff0";
    g.lineWidth = 2;
    g.strokeRect(x, y, s, s);
  }

  async useCrop() {
    const { state } = this.ctx;
    const box = { left: Number(input("crop-x").value), top: Number(input("crop-y").value), size: Number(input("crop-size").value) };
    try {
      const r = await postJson(`/api/sessions/${state.session}/uploads/${state.upload}/crop`, box);
      state.upload = r.upload;
      el("target", HTMLImageElement).src = withToken(r.crop_url);
      el("upload-note").textContent = "your square is used";
      say("");
      state.changed();
    } catch (err) {
      say(/** @type {Error} */ (err).message);
    }
  }

  wire() {
    for (const id of ["crop-size", "crop-x", "crop-y"]) {
      input(id).addEventListener("input", () => { this.updateCropRanges(); this.drawCrop(); });
    }
    el("crop-use").addEventListener("click", () => this.useCrop());
    const file = input("file");
    file.addEventListener("change", () => { if (file.files?.[0]) this.upload(file.files[0]); });
    const drop = el("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const f = e.dataTransfer?.files[0];
      if (f) this.upload(f);
    });
    el("random-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.ctx.send(P.randomFace(Math.max(0, Number(input("seed").value) | 0)));
    });
  }
}

