/**
 * Helpers shared by the speak and listen pages: the access token, fetch with it, the status line, the model's
 * load state (ModelWatch), errors in words, and the live waveform/level meter.
 */

const TOKEN_KEY = "makima-tts.token";
const POLL_MS = 500;

/**
 * The access token, asked for once: `#token=…` in the page address is saved in this browser (and taken out
 * of the address); later visits use the saved one.
 */
export function getToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash !== null) saveToken(fromHash);
  return localStorage.getItem(TOKEN_KEY) || "";
}

/** Save the token in this browser (an empty token removes it). */
function saveToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  if (location.hash.includes("token=")) history.replaceState(null, "", location.pathname + location.search);
}

/**
 * The "Connection" form (#token-form with #token): shows the token in use, saves a new one and calls
 * `onChange(token)`.
 * @param {(token: string) => void} onChange
 */
export function setupTokenForm(onChange) {
  const input = document.getElementById("token");
  input.value = getToken();
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveToken(input.value.trim());
    onChange(input.value.trim());
  });
}

/** The server refused the token (or there is none): open the Connection form at the token field. */
export function askForToken() {
  const connection = document.getElementById("connection");
  if (connection) connection.open = true;
  document.getElementById("token")?.focus();
}

/**
 * fetch() with the bearer token when there is one; throws an Error with the server's code and message
 * (`{"error": {code, message}}`) on 4xx/5xx; a 401 has the code UNAUTHORIZED.
 */
export async function apiFetch(path, token, init = {}) {
  const headers = new Headers(init.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const res = await fetch(path, { ...init, headers });
  if (!res.ok) {
    let error = {};
    try {
      error = (await res.json()).error || {};
    } catch {
      error = {};
    }
    const err = new Error(error.message || res.statusText || `HTTP ${res.status}`);
    err.status = res.status;
    err.code = res.status === 401 ? "UNAUTHORIZED" : error.code || "";
    throw err;
  }
  return res.status === 204 ? null : res.json();
}

/** The status line (an element with role=status) and an optional <progress> under it. */
export class StatusLine {
  constructor(el, progressEl = null) {
    this.el = el;
    this.progressEl = progressEl;
  }

  /**
   * @param {string} text
   * @param {'info'|'busy'|'ok'|'error'} [kind]
   * @param {number|null} [progress] 0..1 shows the progress bar, null hides it
   */
  show(text, kind = "info", progress = null) {
    this.el.textContent = text;
    this.el.dataset.kind = kind;
    if (this.progressEl) {
      this.progressEl.hidden = progress === null;
      if (progress !== null) this.progressEl.value = progress;
    }
  }
}

/**
 * The model's load state for the status line: {state: 'loaded'|'loading'|'not_loaded'|null, progress: 0..1|null,
 * message, error, unreachable}. It starts from the WebSocket's `ready.modelState` (`set`), audio arriving means
 * loaded (`loaded()`), and `follow()` polls `GET /api/v1/status` while it loads: that answers 200 in every
 * state, where `/ready` answers 503 while loading (for load balancers) and the browser would log each poll.
 */
export class ModelWatch {
  /** @param {(watch: ModelWatch) => void} onChange */
  constructor(onChange) {
    this.onChange = onChange;
    Object.assign(this, { state: null, progress: null, message: "", error: null, unreachable: false });
    this.following = null;
  }

  /** @param {{modelState: string, progress?: number, message?: string, error?: string|null}} status */
  set({ modelState, progress = null, message = "", error = null }) {
    Object.assign(this, { state: modelState, progress, message, error: error || null, unreachable: false });
    this.onChange(this);
  }

  loaded() {
    if (this.state !== "loaded") this.set({ modelState: "loaded", progress: 1 });
  }

  /**
   * Poll the state while the model loads, or is not loaded yet while `wanted()` (e.g. a first utterance that
   * starts the load is pending). Resolves with the watch when it stops.
   * @param {string} token
   * @param {() => boolean} [wanted]
   */
  follow(token, wanted = () => false) {
    this.following ??= (async () => {
      while (this.state === "loading" || (this.state !== "loaded" && wanted())) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        try {
          this.set(await apiFetch("/api/v1/status", token, { cache: "no-store" }));
        } catch {
          this.unreachable = true;
          this.onChange(this);
        }
      }
      this.following = null;
      return this;
    })();
    return this.following;
  }

  /** What the status line says about the model when it matters: loading, failed, unreachable; else null. */
  line() {
    if (this.unreachable) return { text: "Cannot reach the speech server. Retrying…", kind: "error", progress: null };
    if (this.state === "loading") {
      const pct = this.progress === null ? "" : ` ${Math.round(this.progress * 100)}%`;
      const text = `Loading model…${pct}${this.message ? ` — ${this.message}` : ""}`;
      return { text, kind: "busy", progress: this.progress ?? 0 };
    }
    if (this.error) return { text: `The model failed to load: ${this.error}`, kind: "error", progress: null };
    return null;
  }
}

/** A SpeakError / server error message / Error in words a person can act on. */
export function describeError(err) {
  const code = err.code || "";
  switch (code) {
    case "UNAUTHORIZED":
      return getToken()
        ? "Access denied: the server refused the access token. Enter the right token under Connection."
        : "This server needs an access token: enter it under Connection (it is saved in this browser).";
    case "CONNECTION_FAILED":
      return "Cannot reach the speech server. Is it running?";
    case "MODEL_LOADING":
      return "The model is still loading; try again in a moment.";
    case "VOICE_NOT_FOUND":
      return "That voice does not exist on the server any more; pick another one.";
    case "ORIGIN_NOT_ALLOWED":
      return "This page's address is not allowed to use the speech server (TTS_ALLOWED_ORIGINS).";
    case "RATE_LIMITED":
      return "Too many requests from you at once; try again in a moment.";
    case "SERVER_BUSY":
    case "QUEUE_FULL":
      return "The server is busy right now; try again in a moment.";
    case "TIMEOUT":
      return "The session was closed after being idle; it reconnects when you speak.";
    case "SERVER_SHUTDOWN":
      return "The speech server is shutting down; try again shortly.";
    default:
      return code ? `${err.message || "Something went wrong"} (${code})` : err.message || String(err);
  }
}

/**
 * Draw a live waveform of `analyser` (if any) and a level bar (if `level` is given) on `canvas`.
 * @param {HTMLCanvasElement} canvas
 * @param {{analyser?: () => AnalyserNode|null, level?: () => number, threshold?: () => number}} sources
 *   level and threshold in 0..1; a negative threshold is not drawn
 */
export function startMeter(canvas, sources) {
  const g = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const accent = style.getPropertyValue("--accent").trim() || "#b3122e";
  const muted = style.getPropertyValue("--muted").trim() || "#888";
  let data = null;
  let peak = 0; // decaying peak of the waveform: quiet voices are drawn larger (up to 30x)
  const draw = () => {
    const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
    const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
    g.clearRect(0, 0, w, h);
    const analyser = sources.analyser?.();
    g.lineWidth = 1.5 * devicePixelRatio;
    g.strokeStyle = accent;
    g.beginPath();
    if (analyser) {
      if (!data || data.length !== analyser.fftSize) data = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(data);
      peak *= 0.97;
      for (const v of data) peak = Math.max(peak, Math.abs(v));
      const gain = Math.min(30, 0.9 / Math.max(peak, 1e-6));
      for (let i = 0; i < data.length; i++) {
        const x = (i / (data.length - 1)) * w;
        const y = h / 2 - Math.max(-1, Math.min(1, data[i] * gain)) * (h / 2);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      }
    } else {
      g.moveTo(0, h / 2);
      g.lineTo(w, h / 2);
    }
    g.stroke();
    if (sources.level) {
      const barH = 6 * devicePixelRatio;
      g.fillStyle = muted;
      g.fillRect(0, h - barH, Math.min(1, sources.level()) * w, barH);
      if (sources.threshold && sources.threshold() >= 0) {
        g.fillStyle = accent;
        const x = Math.min(1, sources.threshold()) * w;
        g.fillRect(x - devicePixelRatio, h - 2 * barH, 2 * devicePixelRatio, 2 * barH);
      }
    }
    requestAnimationFrame(draw);
  };
  requestAnimationFrame(draw);
}
