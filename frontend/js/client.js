// The one websocket client: connects, reconnects with backoff, hands events and frames out.

import { decodeFrame } from "./protocol.js";

/**
 * @typedef {import("./protocol.js").Frame} Frame
 * @typedef {{onEvent: (e: any) => void, onFrame: (f: Frame) => void,
 *            onStatus: (online: boolean) => void}} Handlers
 */

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
    ws.onopen = () => { this.retry = 0; this.handlers.onStatus(true); };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") this.handlers.onEvent(JSON.parse(m.data));
      else this.handlers.onFrame(decodeFrame(m.data));
    };
    ws.onclose = (e) => {
      this.handlers.onStatus(false);
      if (this.closedByUs || e.code === 4401 || e.code === 4403) {
        if (e.code >= 4400) this.handlers.onEvent({ type: "error", code: "refused", message: e.reason });
        return;
      }
      if (e.code === 4404) { this.handlers.onEvent({ type: "session_gone" }); return; }
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
