// The one state object panels read and write, with undo/redo of edits.

/** @typedef {import("./protocol.js").Edit} Edit */

/** @returns {Edit} */
export const neutralEdit = () => ({ scales: {}, truncation: 1, mixing: null });

export class State {
  constructor() {
    /** @type {any} */ this.model = null;
    /** @type {any[]} */ this.directions = [];
    /** @type {any} */ this.limits = null;
    /** @type {string | null} */ this.session = null;
    /** @type {string | null} */ this.upload = null;
    /** @type {string | null} */ this.latent = null;
    /** @type {string | null} */ this.inversionJob = null;
    /** @type {Edit} */ this.edit = neutralEdit();
    /** @type {Edit[]} */ this.undoStack = [];
    /** @type {Edit[]} */ this.redoStack = [];
    // What Undo/Redo act on: the edits, or the inpainting mask after a brush stroke.
    /** @type {"edit" | "mask"} */ this.undoScope = "edit";
    /** @type {Set<() => void>} */ this.listeners = new Set();
  }

  /** @param {() => void} fn */
  subscribe(fn) { this.listeners.add(fn); }
  changed() { for (const fn of this.listeners) fn(); }

  /** Record the current edit before a change (one entry per gesture). */
  checkpoint() {
    this.undoScope = "edit";
    this.undoStack.push(structuredClone(this.edit));
    if (this.undoStack.length > 100) this.undoStack.shift();
    this.redoStack = [];
  }

  /** @param {Partial<Edit>} change */
  setEdit(change) { this.edit = { ...this.edit, ...change }; this.changed(); }

  undo() {
    const prev = this.undoStack.pop();
    if (!prev) return;
    this.redoStack.push(structuredClone(this.edit));
    this.edit = prev;
    this.changed();
  }

  redo() {
    const next = this.redoStack.pop();
    if (!next) return;
    this.undoStack.push(structuredClone(this.edit));
    this.edit = next;
    this.changed();
  }
}
