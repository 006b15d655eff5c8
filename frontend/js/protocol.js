// @ts-check
// Protocol v1 (docs/protocol.md): binary frame decoding and client message builders.

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 32;
/** @type {Record<number, string>} */
const KINDS = { 1: "inversion", 2: "edit" };
/** @type {Record<number, string>} */
const MIMES = { 1: "image/jpeg", 2: "image/png" };

/**
 * @typedef {{kind: string, job: string, step: number, width: number, height: number,
 *            mime: string, blob: Blob}} Frame
 * @typedef {{mask: string, blend_res: number}} Region
 * @typedef {{seed: number, layers: string}} Mixing
 * @typedef {{scales: Record<string, number>, truncation: number,
 *            mixing: Mixing | null, region?: Region | null}} Edit
 *
 * What the server says (docs/protocol.md), as far as the page reads it:
 * @typedef {{id: string, name: string, resolution: number, num_ws: number, w_dim: number,
 *            device: string, engines: string[], preview_heads: boolean, encoder: boolean,
 *            restore?: string[]}} ModelInfo
 * @typedef {{id: string, name: string, resolution: number}} ModelChoice
 * @typedef {{max_upload_bytes: number, max_pixels: number, max_steps: number,
 *            preview_interval_ms: number, preview_size: number, default_engine: string,
 *            default_steps: number}} Limits
 * @typedef {{name: string, method: string, layers: string, slider: [number, number],
 *            step: number}} DirectionInfo
 * @typedef {{id: string, url: string, latent_url: string}} ResultInfo
 * @typedef {{id: string, upload: string | null, upload_url: string | null,
 *            latent: string | null, results: ResultInfo[]}} SessionInfo
 * @typedef {{job: string, engine: string, step: number, total: number}} Running
 * @typedef {{reason: string, engine: string, step: number, total: number, upload: string,
 *            latent: string}} Interrupted
 * @typedef {{type: "hello", protocol: number, session: SessionInfo, limits: Limits,
 *            model: ModelInfo, models: ModelChoice[], directions: DirectionInfo[],
 *            running: Running | null, interrupted: Interrupted | null}} Hello
 * @typedef {{type: "queued", job: string, kind: string, position: number}} Queued
 * @typedef {{type: "started", job: string, kind: string, total: number, init?: string,
 *            note?: string | null}} Started
 * @typedef {{type: "progress", job: string, step: number, total: number, resolution: number,
 *            elapsed: number, losses: Record<string, number>}} Progress
 * @typedef {{type: "done", job: string, kind: string, latent: string | null,
 *            latent_url: string | null, result_url: string | null, mask?: string | null,
 *            mask_url?: string | null, metrics: Record<string, number>}} Done
 * @typedef {{type: "cancelled", job: string, step: number}} Cancelled
 * @typedef {{type: "error", code: string, message: string, job?: string | null}} ErrorEvent
 * @typedef {{type: "session_gone"}} SessionGone
 *
 * Installs (the Models dialog; sent to every page of the server, whichever started them):
 * @typedef {{id: string, name: string, resolution: number, license: string, purpose: string,
 *            description: string, served: boolean, directions: number}} InstalledModel
 * @typedef {"upload" | "download" | "convert" | "load"} InstallStage
 * @typedef {{type: "install_progress", name: string, source: "registry" | "file",
 *            stage: InstallStage, bytes: number, total: number | null,
 *            message: string}} InstallProgress
 * @typedef {{type: "install_done", name: string, model: InstalledModel | null, loaded: boolean,
 *            models: ModelChoice[], message: string}} InstallDone
 * @typedef {{type: "install_failed", name: string, message: string, cancelled: boolean,
 *            kept_bytes: number}} InstallFailed
 * @typedef {Hello | Queued | Started | Progress | Done | Cancelled | ErrorEvent | SessionGone
 *           | InstallProgress | InstallDone | InstallFailed} ServerEvent
 *
 * ``GET /api/models`` (HTTP, not an event):
 * @typedef {{name: string, kind: string, title: string, license: string, purpose: string,
 *            size: number, size_exact: boolean, installed: boolean,
 *            needs: string[]}} RegistryChoice
 * @typedef {{installed: InstalledModel[], registry: RegistryChoice[],
 *            registry_error: string | null, install: InstallProgress | null,
 *            can_install: boolean, refusal: string | null,
 *            max_checkpoint_bytes: number}} ModelsInfo
 */

/**
 * Decode a binary frame: "SL", version, kind, 16-byte job id, step u32, width u16,
 * height u16, mime u8, 3 reserved bytes (big-endian), then the image bytes.
 * @param {ArrayBuffer} buf
 * @returns {Frame}
 */
export function decodeFrame(buf) {
  if (buf.byteLength < HEADER_BYTES) throw new Error("frame shorter than its header");
  const v = new DataView(buf);
  if (v.getUint8(0) !== 0x53 || v.getUint8(1) !== 0x4c || v.getUint8(2) !== PROTOCOL_VERSION) {
    throw new Error("not a StyleLens v1 frame");
  }
  const jobBytes = new Uint8Array(buf, 4, 16);
  let job = "";
  for (const b of jobBytes) if (b) job += String.fromCharCode(b);
  return {
    kind: KINDS[v.getUint8(3)] ?? "unknown",
    job,
    step: v.getUint32(20),
    width: v.getUint16(24),
    height: v.getUint16(26),
    mime: MIMES[v.getUint8(28)] ?? "application/octet-stream",
    blob: new Blob([buf.slice(HEADER_BYTES)], { type: MIMES[v.getUint8(28)] }),
  };
}

/**
 * @param {string} engine @param {number} steps @param {string | null} upload
 * @param {string | null} [initLatent] a latent of the session to start from
 */
export const startInversion = (engine, steps, upload, initLatent = null) =>
  ({ type: "start_inversion", engine, steps, upload, init_latent: initLatent });
/**
 * @typedef {{task: string, scale?: number, mask?: string, handoff_steps?: number}} Restore
 * A restoration (docs/restoration.md): mGANprior's ``steps``, then ``restore.handoff_steps``
 * of ``engine`` to one W+ latent for the sliders.
 * @param {string} engine @param {number} steps @param {string | null} upload
 * @param {Restore} restore
 */
export const startRestore = (engine, steps, upload, restore) =>
  ({ type: "start_inversion", engine, steps, upload, restore });
/** @param {string} latent */
export const useLatent = (latent) => ({ type: "use_latent", latent });
/** @param {string} job */
export const cancel = (job) => ({ type: "cancel", job });
/** @param {string} job */
export const accept = (job) => ({ type: "accept", job });
/** @param {Edit} edit */
export const renderEdit = (edit) => ({ type: "render_edit", ...edit });
/** @param {Edit} edit */
export const commit = (edit) => ({ type: "commit", ...edit });
/** @param {number} seed */
export const randomFace = (seed) => ({ type: "random_face", seed });
/** Find a region (eyes, mouth, nose, face, hair, background) on the current face.
 * @param {string} preset */
export const regionPreset = (preset) => ({ type: "region_preset", preset });
