// @ts-check
// Committed results (and restorations): a PNG and a latent link each, newest first.

import { el } from "../dom.js";
import { withToken } from "../server.js";

/** @typedef {{url: string, latent_url: string}} Result */

export class ResultsPanel {
  constructor() { this.list = el("results"); }

  /** @param {Result} r */
  item(r) {
    const li = document.createElement("li");
    const png = document.createElement("a");
    png.href = withToken(r.url); png.download = "stylelens.png"; png.textContent = "PNG";
    const lat = document.createElement("a");
    lat.href = withToken(r.latent_url); lat.download = "stylelens-latent.safetensors"; lat.textContent = "latent";
    li.append(png, lat);
    return li;
  }

  /** @param {Result[]} results the session's, oldest first as the server lists them */
  set(results) { this.list.replaceChildren(...results.map((r) => this.item(r))); }

  /** @param {Result} r */
  add(r) { this.list.prepend(this.item(r)); }

  clear() { this.list.replaceChildren(); }
}
