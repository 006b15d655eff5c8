// @ts-check
// The one state object panels read and write, with undo/redo of edits.

/** @typedef {import("./protocol.js").Edit} Edit */
/**
 * @typedef {import("./protocol.js").ModelInfo} ModelInfo
 * @typedef {import("./protocol.js").ModelChoice} ModelChoice
 * @typedef {import("./protocol.js").Limits} Limits
 * @typedef {import("./protocol.js").DirectionInfo} DirectionInfo
 * @typedef {import("./protocol.js").Hello} Hello
 */

/** @returns {Edit} */
export const neutralEdit = () => ({ scales: {}, truncation: 1, mixing: null, region: null });

/**
 * One step of the page's history: an edit as it was, or a stroke of a painted mask (the
 * painter keeps the pixels and undoes or redoes its own last step).
 * @typedef {{ undo(): void, redo(): void }} Painter
 * @typedef {{ edit: Edit } | { painter: Painter }} Step
 */

export class State {
  constructor() {
    /** The session's model, the models served, the server's limits (from ``hello``). */
    /** @type {ModelInfo | null} */ this.model = null;
    /** @type {ModelChoice[]} */ this.models = [];
    /** @type {Limits | null} */ this.limits = null;
    /** @type {DirectionInfo[]} */ this.directions = [];
    /** @type {string | null} */ this.session = null;
    /** The target: an upload id of the session. */
    /** @type {string | null} */ this.upload = null;
    /** The latent the edits apply to. */
    /** @type {string | null} */ this.latent = null;
    /** The session's running or queued inversion. */
    /** @type {string | null} */ this.inversionJob = null;
    /** @type {Edit} */ this.edit = neutralEdit();
    // One history for slider moves and mask strokes, so Undo always takes back the last
    // change, whichever it was.
    /** @type {Step[]} */ this.undoStack = [];
    /** @type {Step[]} */ this.redoStack = [];
    /** @type {Set<() => void>} */ this.listeners = new Set();
  }

  /** A new session (another model): nothing of the old one is kept. */
  reset() {
    this.upload = this.latent = this.inversionJob = null;
    this.edit = neutralEdit();
    this.undoStack = [];
    this.redoStack = [];
    this.changed();
  }

  /** @param {Hello} e */
  hello(e) {
    this.model = e.model;
    this.models = e.models;
    this.limits = e.limits;
    this.directions = e.directions;
    this.upload = e.session.upload;
    this.latent = e.session.latent;
  }

  /** @param {() => void} fn */
  subscribe(fn) { this.listeners.add(fn); }
  changed() { for (const fn of this.listeners) fn(); }

  /** @param {Step} step */
  record(step) {
    this.undoStack.push(step);
    if (this.undoStack.length > 100) this.undoStack.shift();
    this.redoStack = [];
  }

  /** Record the current edit before a change (one entry per gesture). */
  checkpoint() { this.record({ edit: structuredClone(this.edit) }); }

  /** @param {Partial<Edit>} change */
  setEdit(change) { this.edit = { ...this.edit, ...change }; this.changed(); }

  undo() {
    const step = this.undoStack.pop();
    if (!step) return;
    if ("painter" in step) {
      step.painter.undo();
      this.redoStack.push(step);
    } else {
      this.redoStack.push({ edit: structuredClone(this.edit) });
      this.edit = step.edit;
    }
    this.changed();
  }

  redo() {
    const step = this.redoStack.pop();
    if (!step) return;
    if ("painter" in step) {
      step.painter.redo();
      this.undoStack.push(step);
    } else {
      this.undoStack.push({ edit: structuredClone(this.edit) });
      this.edit = step.edit;
    }
    this.changed();
  }
}

/**
 * What every panel is given: the state, and a way to send a message to the server (false
 * when the socket is not open).
 * @typedef {{ state: State, send: (msg: object) => boolean }} Ctx
 */
