/**
 * AudioWorklet processor "makima-pcm-player": plays mono Float32 PCM chunks, tagged with their utterance
 * id, back to back, and reports how many samples of each utterance it actually wrote to the output.
 *
 * Jitter buffer: before an utterance starts (and after an underrun) it waits until `jitterMs` of audio is
 * queued or the utterance's audio is complete, so 80 ms frames that arrive a little late still play without
 * gaps. Every underrun raises the target by half (up to `maxJitterMs`). Playback ramps in over 2 ms after
 * each wait and `clear` fades out over 4 ms, so neither clicks.
 *
 * Messages in:   {type: "push", id, samples: Float32Array}   queue audio of utterance `id`
 *                {type: "end", id}                          no more audio will come for `id`
 *                {type: "clear", seq, ids?: string[]}       drop the audio of `ids` (all when absent)
 * Messages out:  {type: "start", id}                        the first sample of `id` was played
 *                {type: "position", id, played, total}      about every 20 ms while playing
 *                {type: "underrun", id, jitterMs}           ran dry in the middle of `id`
 *                {type: "done", id, played, peak, cleared}  `id` finished playing, or was cleared
 *                {type: "cleared", seq, played: {id: n}}    a clear took effect (its fade-out has played)
 */

const RAMP_IN_S = 0.002;
const FADE_OUT_S = 0.004;
const REPORT_S = 0.02;

class PcmPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.target = Math.round(((opts.jitterMs ?? 100) / 1000) * sampleRate);
    this.maxTarget = Math.round(((opts.maxJitterMs ?? 400) / 1000) * sampleRate);
    this.queue = []; // [{id, data: Float32Array, pos, ackSeq?}] in play order
    this.queued = 0; // unplayed samples in `queue`
    this.ended = new Set(); // ids whose audio is complete
    this.dropped = new Set(); // cleared ids: later pushes are ignored
    this.stats = new Map(); // id -> {played, peak, done}
    this.current = null; // id being played, null between utterances
    this.waiting = true; // filling the jitter buffer
    this.rampLeft = 0;
    this.total = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  stat(id) {
    let s = this.stats.get(id);
    if (!s) {
      s = { played: 0, peak: 0, done: false };
      this.stats.set(id, s);
    }
    return s;
  }

  onMessage(msg) {
    if (msg.type === "push") {
      if (this.dropped.has(msg.id) || msg.samples.length === 0) return;
      this.stat(msg.id);
      this.queue.push({ id: msg.id, data: msg.samples, pos: 0 });
      this.queued += msg.samples.length;
    } else if (msg.type === "end") {
      this.ended.add(msg.id);
      const queued = this.queue.some((c) => c.id === msg.id);
      if (!queued) this.finish(msg.id, false);
    } else if (msg.type === "clear") {
      this.clear(msg.seq, msg.ids);
    }
  }

  /** Drop queued audio of `ids` (all when absent); the chunk now playing fades out instead of stopping. */
  clear(seq, ids) {
    const drop = (id) => !ids || ids.includes(id);
    let tail = null;
    if (!this.waiting && this.queue.length && drop(this.queue[0].id)) {
      const id = this.queue[0].id;
      const fade = new Float32Array(Math.round(FADE_OUT_S * sampleRate));
      let n = 0;
      for (const c of this.queue) {
        if (c.id !== id || n === fade.length) break;
        const k = Math.min(fade.length - n, c.data.length - c.pos);
        fade.set(c.data.subarray(c.pos, c.pos + k), n);
        n += k;
      }
      for (let i = 0; i < n; i++) fade[i] *= 1 - (i + 1) / n;
      tail = { id, data: fade.subarray(0, n), pos: 0, ackSeq: seq };
    }
    const cleared = new Set(ids || []);
    for (const c of this.queue) {
      if (!drop(c.id)) continue;
      cleared.add(c.id);
      if (c.ackSeq !== undefined) this.ack(c.ackSeq); // an earlier clear's fade-out that never finished
    }
    this.queue = this.queue.filter((c) => !drop(c.id));
    if (tail) this.queue.unshift(tail);
    this.queued = this.queue.reduce((n, c) => n + c.data.length - c.pos, 0);
    for (const id of cleared) {
      this.dropped.add(id);
      this.ended.add(id);
      if (!tail || id !== tail.id) this.finish(id, true);
    }
    if (!tail) this.ack(seq);
  }

  ack(seq) {
    const played = {};
    for (const [id, s] of this.stats) played[id] = s.played;
    this.port.postMessage({ type: "cleared", seq, played });
  }

  finish(id, cleared) {
    const s = this.stats.get(id);
    if (s && !s.done) {
      s.done = true;
      this.port.postMessage({ type: "done", id, played: s.played, peak: s.peak, cleared });
    }
    if (this.current === id) {
      this.current = null;
      this.waiting = true;
    }
  }

  /** The jitter buffer may start: enough audio queued, or the head utterance has all its audio. */
  canStart() {
    if (this.queued >= this.target) return true;
    const head = this.queue[0].id;
    return this.ended.has(head) || this.queue.some((c) => c.id !== head);
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const rampLen = Math.round(RAMP_IN_S * sampleRate);
    let n = 0;
    while (n < out.length && this.queue.length) {
      if (this.waiting) {
        if (!this.canStart()) break;
        this.waiting = false;
        this.rampLeft = rampLen;
      }
      const c = this.queue[0];
      if (c.id !== this.current) {
        this.current = c.id;
        this.port.postMessage({ type: "start", id: c.id });
      }
      const s = this.stat(c.id);
      const k = Math.min(out.length - n, c.data.length - c.pos);
      for (let i = 0; i < k; i++) {
        let x = c.data[c.pos + i];
        if (this.rampLeft > 0) x *= 1 - this.rampLeft-- / (rampLen + 1);
        out[n + i] = x;
        const a = x < 0 ? -x : x;
        if (a > s.peak) s.peak = a;
      }
      c.pos += k;
      n += k;
      s.played += k;
      this.total += k;
      this.queued -= k;
      if (c.pos === c.data.length) {
        this.queue.shift();
        if (c.ackSeq !== undefined) this.ack(c.ackSeq);
        const next = this.queue[0];
        if ((!next || next.id !== c.id) && this.ended.has(c.id)) this.finish(c.id, this.dropped.has(c.id));
      }
    }
    if (n < out.length && !this.waiting && this.current !== null && this.queue.length === 0) {
      this.waiting = true; // ran dry in the middle of an utterance
      this.target = Math.min(this.maxTarget, Math.round(this.target * 1.5));
      this.port.postMessage({ type: "underrun", id: this.current, jitterMs: (1000 * this.target) / sampleRate });
    }
    out.fill(0, n);
    for (let ch = 1; ch < outputs[0].length; ch++) outputs[0][ch].set(out);

    this.sinceReport += out.length;
    if (this.sinceReport >= REPORT_S * sampleRate && this.current !== null) {
      this.sinceReport = 0;
      const played = this.stats.get(this.current).played;
      this.port.postMessage({ type: "position", id: this.current, played, total: this.total });
    }
    return true;
  }
}

registerProcessor("makima-pcm-player", PcmPlayer);
