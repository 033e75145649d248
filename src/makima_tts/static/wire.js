/**
 * The wire of `/api/v1/speak` (protocol tts.v1, see protocol.md), with no state: the WebSocket URL, the
 * subprotocols (and the token as `tts.token.<token>`), PCM decoding (pcm16 / pcm32f, binary or base64),
 * the close codes with their words (the one copy in the JS of the server's CloseCode), and SpeakError.
 */

const PROTOCOL = "tts.v1";
const TOKEN_PREFIX = "tts.token.";
const SUBPROTOCOL_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // what a Sec-WebSocket-Protocol entry may hold

/**
 * Close codes: the server's CloseCode enum (plus 1006, which only a browser reports: no close frame came).
 * `code` is the error code a close turns into (the same names as the protocol's error codes).
 */
const CLOSE_TABLE = {
  1000: ["NORMAL", "CLOSED", "The session ended."],
  1001: ["GOING_AWAY", "SERVER_SHUTDOWN", "The speech server is shutting down; try again shortly."],
  1006: ["ABNORMAL", "CONNECTION_FAILED", "Could not reach the speech server (connection refused or lost)."],
  1009: ["MESSAGE_TOO_LARGE", "MESSAGE_TOO_LARGE", "A message was too large for the server."],
  1011: ["INTERNAL_ERROR", "INTERNAL_ERROR", "The speech server hit an internal error."],
  1013: ["SERVER_BUSY", "SERVER_BUSY", "The speech server is busy; try again shortly."],
  4001: ["UNAUTHORIZED", "UNAUTHORIZED", "The server refused the access token."],
  4008: ["IDLE_TIMEOUT", "TIMEOUT", "The session was closed after being idle."],
  4009: ["SLOW_CONSUMER", "SLOW_CONSUMER", "The connection was too slow to keep up with the audio."],
};

/** Close code numbers by name: `CloseCode.UNAUTHORIZED === 4001`. */
export const CloseCode = Object.freeze(
  Object.fromEntries(Object.entries(CLOSE_TABLE).map(([num, [name]]) => [name, Number(num)])),
);

/** An error reported by the server or by the connection. */
export class SpeakError extends Error {
  /**
   * @param {string} code protocol error code (e.g. UNAUTHORIZED, MODEL_LOADING) or a connection code
   * @param {string} message
   * @param {{recoverable?: boolean, utteranceId?: string, retryAfterMs?: number, closeCode?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "SpeakError";
    this.code = code;
    Object.assign(this, extra);
  }
}

/** A WebSocket close (code, reason) as a SpeakError with the code's words; recoverable except 4001. */
export function closeError(closeCode, reason = "") {
  const [, code, words] = CLOSE_TABLE[closeCode] || [null, "CLOSED", `The connection closed (code ${closeCode}).`];
  return new SpeakError(code, reason || words, { closeCode, recoverable: closeCode !== CloseCode.UNAUTHORIZED });
}

/** The WebSocket URL: `url` (ws(s) as is; an http(s) base gets /api/v1/speak), default this page's server. */
export function wsUrl(url) {
  if (!url) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/api/v1/speak`;
  }
  const u = new URL(url, location.href);
  if (u.protocol === "http:" || u.protocol === "https:") {
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (u.pathname === "/" || u.pathname === "") u.pathname = "/api/v1/speak";
  }
  return u.toString();
}

/**
 * The subprotocols to offer: `tts.v1`, and the token as `tts.token.<token>` when it has only characters a
 * subprotocol entry may hold (otherwise `inProtocol` is false and it goes in `start.authToken`).
 * @param {string} [token]
 * @returns {{protocols: string[], inProtocol: boolean}}
 */
export function subprotocols(token) {
  const inProtocol = Boolean(token) && SUBPROTOCOL_CHARS.test(token);
  return { protocols: inProtocol ? [PROTOCOL, TOKEN_PREFIX + token] : [PROTOCOL], inProtocol };
}

/** Little-endian PCM bytes → Float32Array in [-1, 1]. */
export function decodePcm(buffer, encoding) {
  if (encoding === "pcm32f") return new Float32Array(buffer);
  const pcm = new Int16Array(buffer); // every platform a browser runs on is little-endian
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

/** An `audioChunk`'s base64 `data` → its PCM bytes. */
export function base64ToBuffer(data) {
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}
