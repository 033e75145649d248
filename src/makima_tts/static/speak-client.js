/**
 * makima-tts browser client: the `/api/v1/speak` protocol (tts.v1, protocol.md) and the utterance records:
 * connect (ready → start → started), whole and streamed text, cancel/interrupt (a cancel-all holds what is
 * sent meanwhile until it is out), one terminal per utterance, and `done` once its audio stopped playing.
 * The wire format lives in wire.js, the playback in player.js, the utterance records in utterance.js. Usage,
 * options, methods and events: README.md "The client library". An utterance handle is {id, done}; `done`
 * settles (never rejects) with {type: complete|cancelled|error, playedMs, stopped (cancel()/interrupt() cut
 * its playback), heardText (the text its played audio had read: utterance.js), message}.
 */

import { Player } from "./player.js";
import { Utterance } from "./utterance.js";
import { base64ToBuffer, CloseCode, closeError, decodePcm, SpeakError, subprotocols, wsUrl } from "./wire.js";

export { CloseCode, SpeakError } from "./wire.js";

/** Sample rate asked of the server unless an AudioContext with another rate is given. */
export const DEFAULT_SAMPLE_RATE = 24000;
const REMEMBERED_CANCELS = 50;

/** One speech session. States: `idle` → `connecting` → `ready` ⇄ `speaking` → `closed`. */
export class SpeakClient extends EventTarget {
  /** @param {Object} [options] url, token, voice, language, encoding, sampleRate, audioContext, contractId, … */
  constructor(options = {}) {
    super();
    this.options = { encoding: "pcm16", play: true, jitterMs: 100, ...options };
    this.state = "idle"; // idle | connecting | ready | speaking | closed
    this.readyInfo = null; // the server's `ready` message (capabilities, modelState, limits)
    this.player = null; // Player, made on the first connect (unless play is false)
    this.playerPending = null; // Promise of the Player while it is being made
    this.ws = null;
    this.sampleRate = options.audioContext?.sampleRate ?? options.sampleRate ?? DEFAULT_SAMPLE_RATE;
    this.utterances = new Map(); // id -> record, until done
    this.receiving = null; // id whose audio the server is sending (between `speaking` and its terminal)
    this.openId = null; // streaming-input utterance whose text is not closed yet
    this.held = null; // messages sent while a cancel-all waits for the fade-out: they go after it
    this.cancelledIds = new Set(); // ids a cancel was sent for (a raced cancel is answered INVALID_STATE)
    this.connecting = null;
    this.handshake = null; // {resolve, reject, tokenInProtocol} while connecting
  }

  // Playback (null / 0 without a player): the AudioContext, an AnalyserNode for meters, the id playing, and
  // what the worklet actually played of an utterance (or, without an id, in total).
  get audioContext() { return this.player?.context ?? null; }
  get analyser() { return this.player?.analyser ?? null; }
  get playing() { return this.player?.playing ?? null; }
  get underruns() { return this.player?.underruns ?? 0; }
  playedSamples(id) { return this.player?.playedSamples(id) ?? 0; }
  playedMs(id) { return Math.round((1000 * this.playedSamples(id)) / this.sampleRate); }
  playedMsFine(id) { return Math.round((1e6 * this.playedSamples(id)) / this.sampleRate) / 1000; } // as textMarks
  playedPeak(id) { return this.player?.peak(id) ?? 0; }
  resumeAudio() { return this.player?.resume() ?? Promise.resolve(); }

  /** ready → start → started; resolves with `ready`, rejects with a SpeakError (e.g. UNAUTHORIZED). The player
   * is made alongside: call from a user gesture, or call `resumeAudio()` from one later. */
  connect() {
    if (this.state === "ready" || this.state === "speaking") return Promise.resolve(this.readyInfo);
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** The handshake and the player are made side by side: a refused handshake (no token, busy) is reported at
   * once, without waiting for the audio stack; a good one resolves once the player exists too. */
  async open() {
    this.setState("connecting");
    const player = this.makePlayer();
    player.catch(() => {}); // reported by the await below, or moot when the handshake failed first
    const { protocols, inProtocol } = subprotocols(this.options.token);
    const ws = new WebSocket(wsUrl(this.options.url), protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    const ready = await new Promise((resolve, reject) => {
      this.handshake = { resolve, reject, tokenInProtocol: inProtocol };
      ws.onmessage = (e) => this.ws === ws && this.onMessage(e.data);
      ws.onclose = (e) => this.ws === ws && this.onClose(e);
    });
    await player;
    return ready;
  }

  /** The Player (AudioContext + worklet), made once; resolves at once without playback or when it exists. */
  makePlayer() {
    if (!this.options.play || this.player) return Promise.resolve();
    const { audioContext, jitterMs } = this.options;
    const onEvent = (e) => this.onPlayer(e);
    this.playerPending ??= Player.create({ audioContext, sampleRate: this.sampleRate, jitterMs, onEvent })
      .then((player) => (this.player = player))
      .finally(() => (this.playerPending = null));
    return this.playerPending;
  }

  /** Speak one whole text; opts {utteranceId, voice, language, priority}: `interrupt` also stops playback now. */
  speak(text, opts = {}) {
    this.assertOpen();
    if (opts.priority === "interrupt") this.stopLocally(this.activeIds());
    const u = this.newUtterance(opts.utteranceId);
    this.send({ type: "speak", utteranceId: u.id, text, ...pick(opts, ["voice", "language", "priority"]) });
    return u.handle;
  }

  /** Whether the server speaks appended text as one utterance from its first words on (`ready`'s
   * capabilities.streamingTextInput); false: it cuts it into sentences. Known once connected. */
  get streamsText() {
    return this.readyInfo?.capabilities?.streamingTextInput === true;
  }

  /** Stream text in: the first call opens an utterance (`opts` as speak()), later ones extend it, end() closes it. */
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

  /** Close the streaming utterance (with a last piece of `text`); null when none was open. */
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

  /** Cancel one utterance, or (no id) the current one and all queued: playback fades out in 4 ms and no more
   * of its audio plays. Resolves with the ms played of the one the cancel reaches (sent as `playedMs`): the
   * named one, or the server's current one (0 when it has not started playing). */
  cancel(utteranceId) {
    return this.cancelIds(utteranceId ? [utteranceId] : this.activeIds(), utteranceId ?? null);
  }

  /** Barge-in: silence now and cancel everything. Once the utterance being played (or received) has settled,
   * emits `interrupted` and resolves with {utteranceId (null when none was), playedMs, heardText} of it. */
  async interrupt() {
    const id = this.playing ?? this.receiving;
    const u = this.utterances.get(id);
    await this.cancelIds(this.activeIds(), null);
    const result = u ? await u.handle.done : { playedMs: id ? this.playedMs(id) : 0, heardText: "" };
    const detail = { utteranceId: id ?? null, playedMs: result.playedMs, heardText: result.heardText };
    this.emit("interrupted", detail);
    return detail;
  }

  /** End the session (`stop`) and close the socket. @param {'immediate'|'drain'} [mode] */
  close(mode = "immediate") {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.send({ type: "stop", mode });
      if (mode === "immediate") this.ws.close(CloseCode.NORMAL);
    }
    if (mode !== "immediate") return;
    this.abandonAll((utteranceId) => ({ type: "cancelled", utteranceId, reason: "disconnect", audioSentMs: null }));
  }

  // ---- internals ---------------------------------------------------------------------------------------
  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state) {
    const previous = this.state;
    if (state === previous) return;
    this.state = state;
    this.emit("statechange", { state, previous });
  }

  updateState() {
    if (this.state === "ready" || this.state === "speaking") this.setState(this.utterances.size ? "speaking" : "ready");
  }

  assertOpen() {
    if (this.ws?.readyState !== WebSocket.OPEN) {
      throw new SpeakError("NOT_CONNECTED", "Not connected to the speech server; call connect() first.");
    }
  }

  send(msg) {
    this.assertOpen();
    if (this.held) this.held.push(msg); // a cancel-all is waiting for the fade-out: it goes first
    else this.ws.send(JSON.stringify(msg));
  }

  newUtterance(id) {
    const u = new Utterance(id);
    this.utterances.set(u.id, u);
    this.resumeAudio();
    this.updateState();
    return u;
  }

  /** Utterances still being generated or played. */
  activeIds() { return [...this.utterances.keys()]; }

  /** Drop the audio of `ids` locally and stop their playback; resolves once the fade-out has played. */
  stopLocally(ids) {
    for (const id of ids) {
      const u = this.utterances.get(id);
      if (u) u.cancelling = true;
      if (id === this.openId) this.openId = null;
    }
    return this.player && ids.length ? this.player.clear(ids) : Promise.resolve(null);
  }

  /** The session is gone: stop every utterance here and finish it with the terminal `terminalFor(id)`. */
  abandonAll(terminalFor) {
    const ids = this.activeIds();
    this.stopLocally(ids);
    for (const id of ids) {
      const u = this.utterances.get(id);
      u.playbackDone = true;
      this.onTerminal(u, terminalFor(id));
    }
  }

  /**
   * Stop the playback of `ids`, then send one `cancel`: for `wireId`, or (null) for everything the server
   * has. What is sent meanwhile waits, so a cancel-all never catches an utterance started after it. Its
   * `playedMs` is that of the utterance it reaches: `wireId`, or the server's current one (the one whose audio
   * comes, else the oldest the server has not finished), not the one playing, which may be complete there.
   */
  async cancelIds(ids, wireId) {
    const holding = wireId === null && !this.held;
    if (holding) this.held = [];
    await this.stopLocally(ids);
    const held = holding ? this.held : [];
    if (holding) this.held = null;
    const reached = wireId ?? this.receiving ?? ids.find((id) => this.utterances.get(id)?.terminal === null);
    const playedMs = reached ? this.playedMsFine(reached) : 0;
    if (this.ws?.readyState !== WebSocket.OPEN) return Math.round(playedMs);
    if (ids.some((id) => this.utterances.get(id) && !this.utterances.get(id).terminal)) {
      if (wireId) this.cancelledIds.add(wireId);
      const oldest = this.cancelledIds.values().next().value;
      if (this.cancelledIds.size > REMEMBERED_CANCELS) this.cancelledIds.delete(oldest);
      this.send({ type: "cancel", ...(wireId ? { utteranceId: wireId } : {}), playedMs });
    }
    for (const msg of held) this.send(msg);
    return Math.round(playedMs);
  }

  onMessage(data) {
    if (typeof data !== "string") return this.onAudio(this.receiving, data);
    const msg = JSON.parse(data);
    const u = msg.utteranceId ? this.utterances.get(msg.utteranceId) : null;
    if (msg.type === "ready") {
      this.readyInfo = msg;
      this.onReady(msg);
    } else if (msg.type === "started") {
      this.setState(this.utterances.size ? "speaking" : "ready");
      this.handshake?.resolve(this.readyInfo);
      this.handshake = null;
    } else if (msg.type === "speaking") {
      this.receiving = msg.utteranceId;
      this.emit("speaking", msg);
    } else if (msg.type === "audioChunk") {
      this.onAudio(msg.utteranceId, base64ToBuffer(msg.data));
    } else if (msg.type === "complete" || msg.type === "cancelled") {
      if (msg.type === "complete" && u?.firstAudioAt != null) msg.clientTtfaMs = Math.round(u.firstAudioAt - u.sentAt);
      this.onTerminal(u, msg);
    } else if (msg.type === "error") {
      // INVALID_STATE for an id we cancelled: the server finished it while our cancel was on the way
      if (msg.code === "INVALID_STATE" && this.cancelledIds.delete(msg.utteranceId)) return;
      if (u) this.onTerminal(u, msg);
      else if (this.handshake) this.failHandshake(new SpeakError(msg.code, msg.message, msg));
      else this.emit("error", msg);
    } else {
      this.emit(msg.type, msg); // flushed, pong, stopped, and anything newer
    }
  }

  /** The server refused the session before `started`: report `err` alone. The socket is let go first, so
   * its close (whichever code the close handshake ends with) is not reported as a disconnect after it. */
  failHandshake(err) {
    const ws = this.ws;
    this.ws = null;
    this.handshake.reject(err);
    this.handshake = null;
    this.setState("closed");
    ws.close(CloseCode.NORMAL);
  }

  onReady(msg) {
    const rates = msg.capabilities?.sampleRates;
    if (rates && !rates.includes(this.sampleRate)) {
      this.failHandshake(new SpeakError("UNSUPPORTED_FORMAT", `The server cannot stream at ${this.sampleRate} Hz.`));
      return;
    }
    this.emit("ready", msg);
    const { encoding, token } = this.options;
    const start = { type: "start", sampleRate: this.sampleRate, encoding, audioTransport: "binary" };
    Object.assign(start, pick(this.options, ["voice", "language", "contractId"]));
    if (token && !this.handshake?.tokenInProtocol) start.authToken = token;
    this.send(start);
  }

  onAudio(id, buffer) {
    const u = this.utterances.get(id);
    if (!u || u.cancelling) return; // cancelled here: none of its audio is played any more
    const samples = decodePcm(buffer, this.options.encoding);
    u.firstAudioAt ??= performance.now();
    this.emit("audio", { utteranceId: id, samples, sampleRate: this.sampleRate });
    if (this.player) {
      this.player.push(id, samples);
      u.pushed = true;
    }
  }

  onTerminal(u, msg) {
    if (!u || u.terminal) return;
    u.terminal = msg;
    if (this.receiving === u.id) this.receiving = null;
    if (this.openId === u.id) this.openId = null;
    this.emit(msg.type, msg);
    if (this.player && u.pushed) this.player.end(u.id);
    else u.playbackDone = true;
    this.maybeFinish(u);
  }

  /** The worklet started, finished (or cleared) or ran dry in an utterance. */
  onPlayer({ type, id, cleared, jitterMs }) {
    if (type === "start") this.emit("playbackstart", { utteranceId: id });
    if (type === "underrun") this.emit("underrun", { id, jitterMs });
    if (type !== "done") return;
    this.emit("playbackend", { utteranceId: id, playedMs: this.playedMs(id), cleared });
    const u = this.utterances.get(id);
    if (u) {
      u.playbackDone = true;
      this.maybeFinish(u);
    }
  }

  maybeFinish(u) {
    if (!u.finished) return;
    this.utterances.delete(u.id);
    u.settle(this.playedMsFine(u.id));
    this.updateState();
  }

  onClose(e) {
    const err = closeError(e.code, e.reason);
    const { code, message, recoverable } = err;
    this.ws = this.held = null;
    if (this.handshake) {
      this.handshake.reject(err);
      this.handshake = null;
    } else if (e.code !== CloseCode.NORMAL && this.utterances.size === 0) {
      this.emit("error", { code, message, recoverable, closeCode: e.code });
    }
    this.abandonAll((utteranceId) => ({ type: "error", code, message, closeCode: e.code, utteranceId }));
    this.receiving = this.openId = null;
    this.setState("closed");
    this.emit("close", { code: e.code, reason: e.reason });
  }
}

/** The fields `keys` of `obj` that are set (not undefined, null or ""). */
function pick(obj, keys) {
  return Object.fromEntries(keys.filter((k) => obj[k] != null && obj[k] !== "").map((k) => [k, obj[k]]));
}
