/**
 * Playback: the AudioContext, the "makima-pcm-player" worklet (player-worklet.js) and an AnalyserNode
 * after it, and the accounting of what was actually played (samples and peak per utterance, in total).
 * It knows utterance ids but nothing of the protocol.
 */

const CLEAR_TIMEOUT_MS = 100;
const MAX_REMEMBERED = 500;

export class Player {
  /**
   * Create the AudioContext (unless one is given) and load the worklet.
   * @param {{audioContext?: AudioContext, sampleRate: number, jitterMs: number,
   *          onEvent: (msg: {type: 'start'|'done'|'underrun', id: string, cleared?: boolean}) => void}} opts
   *   onEvent: the worklet started playing `id`, finished or cleared it, or ran dry in the middle of it
   */
  static async create({ audioContext, sampleRate, jitterMs, onEvent }) {
    const ctx = audioContext || new AudioContext({ sampleRate, latencyHint: "interactive" });
    await ctx.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "makima-pcm-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { jitterMs },
    });
    return new Player(ctx, node, onEvent);
  }

  constructor(ctx, node, onEvent) {
    this.context = ctx;
    this.node = node;
    this.onEvent = onEvent;
    /** An AnalyserNode fed by the playback, for meters and waveforms. */
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    node.connect(this.analyser);
    this.analyser.connect(ctx.destination);
    node.port.onmessage = (e) => this.onMessage(e.data);
    this.played = new Map(); // id -> samples played (also after the utterance finished)
    this.peaks = new Map(); // id -> peak |sample| played
    this.totalPlayed = 0;
    this.underruns = 0; // times playback ran dry in the middle of an utterance
    this.playing = null; // id being played
    this.clearSeq = 0;
    this.clearWaiters = new Map(); // seq -> resolve
  }

  /** Resume the AudioContext (browsers start it suspended without a user gesture). */
  resume() {
    return this.context.state === "suspended" ? this.context.resume() : Promise.resolve();
  }

  /** Queue audio of utterance `id`. */
  push(id, samples) {
    this.node.port.postMessage({ type: "push", id, samples });
  }

  /** No more audio will come for `id`: it finishes (`done`) once what is queued has played. */
  end(id) {
    this.node.port.postMessage({ type: "end", id });
  }

  /**
   * Drop the audio of `ids` (4 ms fade-out). Resolves once the fade-out has played (the played counts are
   * final then), or with null when the context is not running or after 100 ms.
   * @param {string[]} ids
   * @returns {Promise<Object<string, number>|null>}
   */
  clear(ids) {
    const seq = ++this.clearSeq;
    this.node.port.postMessage({ type: "clear", seq, ids });
    if (this.context.state !== "running") return Promise.resolve(null);
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

  /** @param {string} [id] samples of `id` (or in total) the worklet wrote to the output */
  playedSamples(id) {
    return id === undefined ? this.totalPlayed : this.played.get(id) ?? 0;
  }

  /** @param {string} id the loudest sample played of `id` (0..1), known once it is done */
  peak(id) {
    return this.peaks.get(id) ?? 0;
  }

  onMessage(msg) {
    if (msg.type === "position") {
      this.played.set(msg.id, msg.played);
      this.totalPlayed = msg.total;
    } else if (msg.type === "start") {
      this.playing = msg.id;
      this.onEvent({ type: "start", id: msg.id });
    } else if (msg.type === "done") {
      this.played.set(msg.id, msg.played);
      this.peaks.set(msg.id, msg.peak);
      if (this.playing === msg.id) this.playing = null;
      this.onEvent({ type: "done", id: msg.id, cleared: msg.cleared });
    } else if (msg.type === "underrun") {
      this.underruns += 1;
      this.onEvent({ type: "underrun", id: msg.id, jitterMs: msg.jitterMs });
    } else if (msg.type === "cleared") {
      for (const [id, n] of Object.entries(msg.played)) this.played.set(id, n);
      this.clearWaiters.get(msg.seq)?.(msg.played);
      this.clearWaiters.delete(msg.seq);
    }
    while (this.played.size > MAX_REMEMBERED) {
      const oldest = this.played.keys().next().value;
      this.played.delete(oldest);
      this.peaks.delete(oldest);
    }
  }
}
