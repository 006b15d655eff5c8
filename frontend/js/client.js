// @ts-check
// The one websocket client: connects, reconnects with backoff, hands events and frames out.

import { decodeFrame } from "./protocol.js";

/**
 * @typedef {import("./protocol.js").Frame} Frame
 * @typedef {"online" | "reconnecting" | "refused" | "gone"} Status
 * @typedef {{onEvent: (e: import("./protocol.js").ServerEvent) => void,
 *            onFrame: (f: Frame) => void, onStatus: (status: Status) => void}} Handlers
 */

// Close codes the server ends a refused connection with (docs/protocol.md): the client stops
// there (reconnecting cannot help) and says why.
const REFUSED = { 4401: "this server needs its access token", 4403: "this page's origin is not allowed" };
const SESSION_GONE = 4404;

export class Client {
  /**
   * @param {string} url websocket URL (with session and token)
   * @param {Handlers} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.retry = 0;
    this.closedByUs = false;
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    // Online at the first message (the server's hello), not at the handshake: a refused
    // socket is accepted and then closed with its reason, and must not flash "online".
    let greeted = false;
    ws.onmessage = (m) => {
      if (!greeted) { greeted = true; this.retry = 0; this.handlers.onStatus("online"); }
      // A message the page cannot read (a newer server, a proxy's page) is skipped, not fatal.
      let message;
      try {
        message = typeof m.data === "string" ? JSON.parse(m.data) : decodeFrame(m.data);
      } catch (err) {
        console.warn("an unreadable message from the server was skipped", err);
        return;
      }
      if (typeof m.data === "string") this.handlers.onEvent(message);
      else this.handlers.onFrame(message);
    };
    ws.onclose = (e) => {
      if (this.closedByUs) return;
      if (e.code in REFUSED) {
        this.handlers.onStatus("refused");
        const why = REFUSED[/** @type {4401 | 4403} */ (e.code)];
        this.handlers.onEvent({ type: "error", code: "refused", message: `refused: ${why} (${e.reason})` });
        return;
      }
      if (e.code === SESSION_GONE) {
        this.handlers.onStatus("gone");
        this.handlers.onEvent({ type: "session_gone" });
        return;
      }
      this.handlers.onStatus("reconnecting");
      const delay = Math.min(10000, 500 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
    this.ws = ws;
  }

  /** @param {object} msg @returns {boolean} whether it was sent */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close() { this.closedByUs = true; this.ws?.close(); }
}
