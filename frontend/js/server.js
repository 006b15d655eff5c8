// @ts-check
// HTTP to the server: the access token (from ?token= or this tab's storage) on every request.

const params = new URLSearchParams(location.search);
export const token = params.get("token") ?? sessionStorage.getItem("stylelens.token");
if (token) sessionStorage.setItem("stylelens.token", token);

/** A URL of the server with the token as a query parameter (for links, images, websockets).
 * @param {string} path */
export const withToken = (path) =>
  (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

/** An HTTP error with the server's ``detail`` and the status. */
export class HttpError extends Error {
  /** @param {string} message @param {number} status */
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * A JSON request; an answer that is not 2xx throws an {@link HttpError} with the server's
 * ``detail``.
 * @param {string} path @param {RequestInit} [init] @returns {Promise<any>}
 */
export async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const r = await fetch(path, { ...init, headers });
  if (!r.ok) {
    let detail = `${r.status} ${r.statusText}`;
    try { detail = (await r.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new HttpError(typeof detail === "string" ? detail : JSON.stringify(detail), r.status);
  }
  return r.json();
}

/** POST a JSON body. @param {string} path @param {object} body */
export const postJson = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

/** POST one file as the multipart field ``file``. @param {string} path @param {Blob} file @param {string} [name] */
export function postFile(path, file, name) {
  const form = new FormData();
  if (name) form.append("file", file, name); else form.append("file", file);
  return api(path, { method: "POST", body: form });
}

/** POST a file as the raw request body (streamed by the browser, not read into memory).
 * @param {string} path @param {Blob} file */
export const postRaw = (path, file) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file });

/** DELETE. @param {string} path */
export const del = (path) => api(path, { method: "DELETE" });
