// @ts-check
// Typed look-ups of the page's elements, and the message line.

/**
 * The element with this id, as the type the caller names (the page's ids are fixed in
 * index.html; a missing one is a bug, so it throws rather than returning null).
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {new () => T} [type] e.g. HTMLInputElement, checked at run time
 * @returns {T}
 */
export function el(id, type) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  if (type && !(found instanceof type)) throw new Error(`#${id} is not a ${type.name}`);
  return /** @type {T} */ (found);
}

/** @param {string} id */
export const input = (id) => el(id, HTMLInputElement);
/** @param {string} id */
export const select = (id) => el(id, HTMLSelectElement);
/** @param {string} id */
export const button = (id) => el(id, HTMLButtonElement);
/** @param {string} id */
export const canvas = (id) => el(id, HTMLCanvasElement);

/** A canvas's 2D context (every canvas of the page has one).
 * @param {HTMLCanvasElement} c @param {CanvasRenderingContext2DSettings} [settings] */
export function context2d(c, settings) {
  const ctx = c.getContext("2d", settings);
  if (!ctx) throw new Error("no 2D canvas context");
  return ctx;
}

/** Show a message to the user (an error unless ``kind`` is "info"); "" hides it.
 * @param {string} text @param {"error" | "info"} [kind] */
export function say(text, kind = "error") {
  const box = el("message");
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}
