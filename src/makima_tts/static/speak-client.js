/**
 * makima-tts browser client: an ES module with no dependencies. It talks to `/api/v1/speak` (protocol
 * tts.v1, see protocol.md) and plays the audio through an AudioWorklet at the stream's sample rate.
 *
 *   import { SpeakClient } from "/static/speak-client.js";
 *   const tts = new SpeakClient({ token: "secret" });   // token only when the server has tokens configured
 *   await tts.connect();
 *   tts.speak("Hello, I am Makima.");
 *   tts.append("Sure, the weather in "); tts.append("Paris is sunny."); tts.end();   // streaming text
 *   tts.interrupt();                                     // barge-in: silence now, cancel with playedMs
 *
 * Events (CustomEvent, payload in `event.detail`): `statechange` {state, previous}, `ready` (the server's
 * ready message), `speaking`, `audio` {utteranceId, samples: Float32Array, sampleRate}, `complete`
 * (+ clientTtfaMs), `cancelled`, `flushed`, `error` {code, message, recoverable, utteranceId?},
 * `playbackstart` / `playbackend` {utteranceId, playedMs, cleared}, `underrun`, `interrupted`
 * {utteranceId, playedMs}, `close` {code, reason}.
 */

/** Sample rate asked of the server unless an AudioContext with another rate is given. */
export const DEFAULT_SAMPLE_RATE = 24000;

const PROTOCOL = "tts.v1";
const TOKEN_PREFIX = "tts.token.";
const SUBPROTOCOL_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // what a Sec-WebSocket-Protocol entry may hold
const CLEAR_TIMEOUT_MS = 100;
const MAX_REMEMBERED = 500;

/** What each close code means, in words a page can show. */
const CLOSE_CODES = {
  1006: ["CONNECTION_FAILED", "Could not reach the speech server (connection refused or lost)."],
  1009: ["MESSAGE_TOO_LARGE", "A message was too large for the server."],
  1011: ["INTERNAL_ERROR", "The speech server hit an internal error."],
  1013: ["SERVER_BUSY", "The speech server is busy; try again shortly."],
  4001: ["UNAUTHORIZED", "The server refused the access token."],
  4008: ["TIMEOUT", "The session was closed after being idle."],
  4009: ["SLOW_CONSUMER", "The connection was too slow to keep up with the audio."],
};

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

/**
 * @typedef {Object} SpeakClientOptions
 * @property {string} [url] WebSocket URL, or the server's http(s) base URL; default: this page's server
 * @property {string} [token] access token; sent as the `tts.token.<token>` subprotocol entry (or in
 *   `start.authToken` when it has characters a subprotocol cannot carry)
 * @property {string} [voice] session voice id (each utterance may override it)
 * @property {string} [language] session language (each utterance may override it)
 * @property {'pcm16'|'pcm32f'} [encoding='pcm16'] wire encoding of the audio
 * @property {number} [sampleRate=24000] stream sample rate; the client's AudioContext runs at this rate
 * @property {AudioContext} [audioContext] play through this context; the stream then uses its rate
 * @property {string} [contractId] passed through in `start`
 * @property {boolean} [play=true] false: do not play, only emit `audio` events
 * @property {number} [jitterMs=100] audio queued before playback starts (raised after underruns): with
 *   80 ms frames playback starts on the second frame, so one late frame does not cause a gap
 */

/**
 * @typedef {Object} Utterance
 * @property {string} id utterance id (sent as `utteranceId`)
 * @property {Promise<{type: 'complete'|'cancelled'|'error', playedMs: number, stopped: boolean, message: Object}>} done
 *   settles (never rejects) once the server has finished the utterance and its audio has stopped playing;
 *   `type` is the server's terminal, `stopped` is true when cancel()/interrupt() cut its playback short
 */

let idCounter = 0;
function newUtteranceId() {
  idCounter += 1;
  return `u${idCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/v1/speak`;
}

function wsUrl(url) {
  if (!url) return defaultUrl();
  const u = new URL(url, location.href);
  if (u.protocol === "http:" || u.protocol === "https:") {
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (u.pathname === "/" || u.pathname === "") u.pathname = "/api/v1/speak";
  }
  return u.toString();
}

/** Little-endian PCM bytes → Float32Array in [-1, 1]. */
function decodePcm(buffer, encoding) {
  if (encoding === "pcm32f") return new Float32Array(buffer);
  const pcm = new Int16Array(buffer); // every platform a browser runs on is little-endian
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

function base64ToBuffer(data) {
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

/**
 * One speech session over `/api/v1/speak`: speak whole texts or stream text in, play or receive the audio,
 * cancel and interrupt. States: `idle` → `connecting` → `ready` ⇄ `speaking` → `closed`.
 */
export class SpeakClient extends EventTarget {
  /** @param {SpeakClientOptions} [options] */
  constructor(options = {}) {
    super();
    this.options = { encoding: "pcm16", play: true, jitterMs: 100, ...options };
    /** @type {'idle'|'connecting'|'ready'|'speaking'|'closed'} */
    this.state = "idle";
    /** The server's `ready` message (capabilities, modelState, limits) once connected. */
    this.readyInfo = null;
    /** @type {AudioContext|null} */
    this.audioContext = null;
    /** An AnalyserNode fed by the playback, for meters and waveforms (null when not playing). */
    this.analyser = null;
    this.ws = null;
    this.sampleRate = options.audioContext?.sampleRate ?? options.sampleRate ?? DEFAULT_SAMPLE_RATE;
    this.player = null;
    this.utterances = new Map(); // id -> record, until finished
    this.played = new Map(); // id -> samples played (also after the utterance finished)
    this.peaks = new Map(); // id -> peak |sample| played
    this.totalPlayed = 0;
    this.underruns = 0; // times playback ran dry in the middle of an utterance
    this.receiving = null; // id whose audio the server is sending (between `speaking` and its terminal)
    this.playing = null; // id the worklet is playing
    this.openId = null; // streaming-input utterance whose text is not closed yet
    this.clearSeq = 0;
    this.held = null; // messages sent while a cancel-all waits for the fade-out
    this.cancelledIds = new Set(); // ids a cancel was sent for
    this.clearWaiters = new Map();
    this.connecting = null;
    this.handshake = null; // {resolve, reject, tokenInProtocol} while connecting
  }

  /**
   * Open the WebSocket, wait for `ready`, configure the session with `start` and wait for `started`.
   * Creates the AudioContext and loads the worklet first (call it from a user gesture, or call
   * `resumeAudio()` from one later, if the page has no autoplay permission).
   * @returns {Promise<Object>} the server's `ready` message
   * @throws {SpeakError} e.g. code UNAUTHORIZED (close 4001) or CONNECTION_FAILED
   */
  connect() {
    if (this.state === "ready" || this.state === "speaking") return Promise.resolve(this.readyInfo);
    if (!this.connecting) this.connecting = this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  async open() {
    this.setState("connecting");
    if (this.options.play) await this.initAudio();
    const protocols = [PROTOCOL];
    const token = this.options.token;
    const tokenInProtocol = token && SUBPROTOCOL_CHARS.test(token);
    if (tokenInProtocol) protocols.push(TOKEN_PREFIX + token);
    const ws = new WebSocket(wsUrl(this.options.url), protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    return new Promise((resolve, reject) => {
      this.handshake = { resolve, reject, tokenInProtocol };
      ws.onmessage = (e) => {
        if (this.ws === ws) this.onMessage(e.data);
      };
      ws.onclose = (e) => {
        if (this.ws === ws) this.onClose(e);
      };
    });
  }

  /** Create the AudioContext at the stream rate and the player worklet (once). */
  async initAudio() {
    if (this.player) return;
    const ctx =
      this.options.audioContext || new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    await ctx.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "makima-pcm-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { jitterMs: this.options.jitterMs },
    });
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    node.connect(analyser);
    analyser.connect(ctx.destination);
    node.port.onmessage = (e) => this.onPlayer(e.data);
    this.audioContext = ctx;
    this.analyser = analyser;
    this.player = node;
  }

  /** Resume the AudioContext (browsers start it suspended without a user gesture). */
  resumeAudio() {
    if (this.audioContext && this.audioContext.state === "suspended") return this.audioContext.resume();
    return Promise.resolve();
  }

  /**
   * Speak one whole text.
   * @param {string} text
   * @param {{utteranceId?: string, voice?: string, language?: string, priority?: 'normal'|'high'|'interrupt'}} [opts]
   *   priority `interrupt` also stops what is playing now
   * @returns {Utterance}
   */
  speak(text, opts = {}) {
    this.assertOpen();
    if (opts.priority === "interrupt") this.stopLocally(this.activeIds());
    const u = this.newUtterance(opts.utteranceId);
    this.send({ type: "speak", utteranceId: u.id, text, ...pick(opts, ["voice", "language", "priority"]) });
    return u.handle;
  }

  /**
   * Stream text in (e.g. LLM tokens): the first call opens an utterance, later calls extend it, `end()`
   * closes it. Audio starts before the text is complete.
   * @param {string} text
   * @param {{voice?: string, language?: string, priority?: 'normal'|'high'|'interrupt'}} [opts] used when opening
   * @returns {Utterance}
   */
  append(text, opts = {}) {
    this.assertOpen();
    let u = this.utterances.get(this.openId);
    const extra = u ? {} : pick(opts, ["voice", "language", "priority"]);
    if (!u) {
      if (opts.priority === "interrupt") this.stopLocally(this.activeIds());
      u = this.newUtterance(opts.utteranceId);
      this.openId = u.id;
    }
    this.send({ type: "speak", utteranceId: u.id, text, continue: true, ...extra });
    return u.handle;
  }

  /**
   * Close the streaming utterance opened by `append()`.
   * @param {string} [text] last piece of text
   * @returns {Utterance|null} null when no utterance was open
   */
  end(text = "") {
    const u = this.utterances.get(this.openId);
    this.openId = null;
    if (!u) return null;
    this.send({ type: "speak", utteranceId: u.id, text, continue: false });
    return u.handle;
  }

  /** Speak the streamed text received so far without waiting for more (answered by `flushed`). */
  flush() {
    this.send({ type: "flush", ...(this.openId ? { utteranceId: this.openId } : {}) });
  }

  /**
   * Cancel one utterance, or the current one and everything queued. Its playback stops at once (4 ms
   * fade) and no more of its audio is played.
   * @param {string} [utteranceId]
   * @returns {Promise<number>} milliseconds of it that were played (sent as `playedMs`)
   */
  cancel(utteranceId) {
    return this.cancelIds(utteranceId ? [utteranceId] : this.activeIds(), utteranceId ?? null);
  }

  /**
   * Barge-in: stop playback at once and cancel everything, reporting how much of the current utterance the
   * user heard. Emits `interrupted` {utteranceId, playedMs}.
   * @returns {Promise<number>} playedMs of the utterance that was playing
   */
  async interrupt() {
    const id = this.playing ?? this.receiving;
    const playedMs = await this.cancelIds(this.activeIds(), null);
    this.emit("interrupted", { utteranceId: id, playedMs });
    return playedMs;
  }

  /**
   * End the session (`stop`) and close the socket.
   * @param {'immediate'|'drain'} [mode='immediate']
   */
  close(mode = "immediate") {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.send({ type: "stop", mode });
      if (mode === "immediate") this.ws.close(1000);
    }
    if (mode !== "immediate") return;
    const ids = this.activeIds();
    this.stopLocally(ids);
    for (const id of ids) {
      const u = this.utterances.get(id);
      u.playbackDone = true;
      this.onTerminal(u, { type: "cancelled", utteranceId: id, reason: "disconnect", audioSentMs: null });
    }
  }

  /**
   * Samples actually played by the worklet: of one utterance, or in total.
   * @param {string} [utteranceId]
   */
  playedSamples(utteranceId) {
    return utteranceId === undefined ? this.totalPlayed : this.played.get(utteranceId) ?? 0;
  }

  /** @param {string} [utteranceId] @returns {number} milliseconds played (see playedSamples) */
  playedMs(utteranceId) {
    return Math.round((1000 * this.playedSamples(utteranceId)) / this.sampleRate);
  }

  /** @param {string} utteranceId @returns {number} the loudest sample played of it (0..1) */
  playedPeak(utteranceId) {
    return this.peaks.get(utteranceId) ?? 0;
  }

  // ---- internals ---------------------------------------------------------------------------------------

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit("statechange", { state, previous });
  }

  updateState() {
    if (this.state !== "ready" && this.state !== "speaking") return;
    this.setState(this.utterances.size ? "speaking" : "ready");
  }

  assertOpen() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      throw new SpeakError("NOT_CONNECTED", "Not connected to the speech server; call connect() first.");
    }
  }

  send(msg) {
    this.assertOpen();
    if (this.held) this.held.push(msg); // a cancel-all is waiting for the fade-out: it goes first
    else this.ws.send(JSON.stringify(msg));
  }

  newUtterance(id) {
    const u = { id: id || newUtteranceId(), sentAt: performance.now(), firstAudioAt: null };
    u.terminal = null; // complete | cancelled | error message
    u.pushed = false; // some audio went to the worklet
    u.playbackDone = false;
    u.cancelling = false; // drop its audio from now on
    u.handle = { id: u.id, done: new Promise((resolve) => (u.resolve = resolve)) };
    this.utterances.set(u.id, u);
    this.resumeAudio();
    this.updateState();
    return u;
  }

  /** Utterances still being generated or played. */
  activeIds() {
    return [...this.utterances.keys()];
  }

  /** Drop the audio of `ids` locally and stop their playback; resolves with the worklet's played counts. */
  stopLocally(ids) {
    for (const id of ids) {
      const u = this.utterances.get(id);
      if (u) u.cancelling = true;
      if (id === this.openId) this.openId = null;
    }
    if (!this.player || ids.length === 0) return Promise.resolve(null);
    const seq = ++this.clearSeq;
    this.player.port.postMessage({ type: "clear", seq, ids });
    if (this.audioContext.state !== "running") return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.clearWaiters.delete(seq);
        resolve(null);
      }, CLEAR_TIMEOUT_MS);
      this.clearWaiters.set(seq, (played) => {
        clearTimeout(timer);
        resolve(played);
      });
    });
  }

  /**
   * Stop the playback of `ids`, then send one `cancel`: for `wireId`, or (null) for everything the server
   * has. What is sent meanwhile waits, so a cancel-all never catches an utterance started after it.
   */
  async cancelIds(ids, wireId) {
    const heard = ids.includes(this.playing) ? this.playing : wireId ?? this.receiving ?? ids[0];
    const holding = wireId === null && !this.held;
    if (holding) this.held = [];
    await this.stopLocally(ids);
    const held = holding ? this.held : [];
    if (holding) this.held = null;
    const playedMs = heard ? this.playedMs(heard) : 0;
    const stillOpen = ids.some((id) => this.utterances.get(id) && !this.utterances.get(id).terminal);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (stillOpen) {
        if (wireId) this.rememberCancel(wireId);
        this.send({ type: "cancel", ...(wireId ? { utteranceId: wireId } : {}), playedMs });
      }
      for (const msg of held) this.send(msg);
    }
    return playedMs;
  }

  onMessage(data) {
    if (typeof data !== "string") {
      this.onAudio(this.receiving, data);
      return;
    }
    const msg = JSON.parse(data);
    const u = msg.utteranceId ? this.utterances.get(msg.utteranceId) : null;
    switch (msg.type) {
      case "ready":
        this.readyInfo = msg;
        this.onReady(msg);
        break;
      case "started":
        this.setState(this.utterances.size ? "speaking" : "ready");
        if (this.handshake) this.handshake.resolve(this.readyInfo);
        this.handshake = null;
        break;
      case "speaking":
        this.receiving = msg.utteranceId;
        this.emit("speaking", msg);
        break;
      case "audioChunk":
        this.onAudio(msg.utteranceId, base64ToBuffer(msg.data));
        break;
      case "complete":
        if (u && u.firstAudioAt !== null) msg.clientTtfaMs = Math.round(u.firstAudioAt - u.sentAt);
        this.onTerminal(u, msg);
        break;
      case "cancelled":
        this.onTerminal(u, msg);
        break;
      case "error":
        if (u) this.onTerminal(u, msg);
        else if (this.handshake) this.failHandshake(new SpeakError(msg.code, msg.message, msg));
        else if (!this.isRacedCancel(msg)) this.emit("error", msg);
        break;
      default:
        this.emit(msg.type, msg); // flushed, pong, stopped, and anything newer
    }
  }

  failHandshake(err) {
    this.handshake.reject(err);
    this.handshake = null;
    this.ws.close(1000);
  }

  rememberCancel(id) {
    this.cancelledIds.add(id);
    if (this.cancelledIds.size > 50) this.cancelledIds.delete(this.cancelledIds.values().next().value);
  }

  /** The server finished an utterance while our cancel for it was on the way: not worth an error. */
  isRacedCancel(msg) {
    if (msg.code !== "INVALID_STATE") return false;
    const id = [...this.cancelledIds].find((c) => (msg.message || "").includes(c));
    this.cancelledIds.delete(id);
    return id !== undefined;
  }

  onReady(msg) {
    const rates = msg.capabilities?.sampleRates;
    if (rates && !rates.includes(this.sampleRate)) {
      this.failHandshake(new SpeakError("UNSUPPORTED_FORMAT", `The server cannot stream at ${this.sampleRate} Hz.`));
      return;
    }
    this.emit("ready", msg);
    const start = {
      type: "start",
      sampleRate: this.sampleRate,
      encoding: this.options.encoding,
      audioTransport: "binary",
      ...pick(this.options, ["voice", "language", "contractId"]),
    };
    if (this.options.token && !this.handshake?.tokenInProtocol) start.authToken = this.options.token;
    this.send(start);
  }

  onAudio(id, buffer) {
    const u = this.utterances.get(id);
    if (!u || u.cancelling) return; // cancelled here: none of its audio is played any more
    const samples = decodePcm(buffer, this.options.encoding);
    if (u.firstAudioAt === null) u.firstAudioAt = performance.now();
    this.emit("audio", { utteranceId: id, samples, sampleRate: this.sampleRate });
    if (this.player) {
      this.player.port.postMessage({ type: "push", id, samples });
      u.pushed = true;
    }
  }

  onTerminal(u, msg) {
    if (!u || u.terminal) return;
    u.terminal = msg;
    if (this.receiving === u.id) this.receiving = null;
    if (this.openId === u.id) this.openId = null;
    if (msg.type === "error") this.emit("error", msg);
    else this.emit(msg.type, msg);
    if (this.player && u.pushed) this.player.port.postMessage({ type: "end", id: u.id });
    else u.playbackDone = true;
    this.maybeFinish(u);
  }

  onPlayer(msg) {
    if (msg.type === "position") {
      this.played.set(msg.id, msg.played);
      this.totalPlayed = msg.total;
    } else if (msg.type === "start") {
      this.playing = msg.id;
      this.emit("playbackstart", { utteranceId: msg.id });
    } else if (msg.type === "done") {
      this.played.set(msg.id, msg.played);
      this.peaks.set(msg.id, msg.peak);
      if (this.playing === msg.id) this.playing = null;
      const u = this.utterances.get(msg.id);
      this.emit("playbackend", { utteranceId: msg.id, playedMs: this.playedMs(msg.id), cleared: msg.cleared });
      if (u) {
        u.playbackDone = true;
        this.maybeFinish(u);
      }
    } else if (msg.type === "underrun") {
      this.underruns += 1;
      this.emit("underrun", msg);
    } else if (msg.type === "cleared") {
      for (const [id, n] of Object.entries(msg.played)) this.played.set(id, n);
      this.clearWaiters.get(msg.seq)?.(msg.played);
      this.clearWaiters.delete(msg.seq);
    }
    this.trimMemory();
  }

  maybeFinish(u) {
    if (!u.terminal || !u.playbackDone) return;
    this.utterances.delete(u.id);
    u.resolve({ type: u.terminal.type, playedMs: this.playedMs(u.id), stopped: u.cancelling, message: u.terminal });
    this.updateState();
  }

  trimMemory() {
    while (this.played.size > MAX_REMEMBERED) {
      const oldest = this.played.keys().next().value;
      this.played.delete(oldest);
      this.peaks.delete(oldest);
    }
  }

  onClose(e) {
    const [code, message] = CLOSE_CODES[e.code] || ["CLOSED", `The connection closed (code ${e.code}).`];
    const err = new SpeakError(code, e.reason || message, { closeCode: e.code, recoverable: e.code !== 4001 });
    this.ws = null;
    this.held = null;
    const lost = [...this.utterances.values()];
    if (this.handshake) {
      this.handshake.reject(err);
      this.handshake = null;
    } else if (e.code !== 1000 && lost.length === 0) {
      this.emit("error", { code, message: err.message, recoverable: err.recoverable, closeCode: e.code });
    }
    this.stopLocally(lost.map((u) => u.id));
    for (const u of lost) {
      u.playbackDone = true;
      this.onTerminal(u, { type: "error", code, message: err.message, closeCode: e.code, utteranceId: u.id });
    }
    this.receiving = null;
    this.openId = null;
    this.setState("closed");
    this.emit("close", { code: e.code, reason: e.reason });
  }
}

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined && obj[k] !== null && obj[k] !== "") out[k] = obj[k];
  return out;
}
