/**
 * Microphone input for the pages: opens the microphone into its own AudioContext through the "makima-mic"
 * worklet, emits its level every 10 ms, records on request (keeping a short pre-roll so the start of a word
 * is not lost) and encodes recordings as 16-bit mono WAV.
 *
 * Events: `level` {rms, peak, db} (linear 0..1 and dBFS).
 */

export class Microphone extends EventTarget {
  /**
   * Ask for the microphone and start measuring it.
   * @param {{prerollMs?: number, echoCancellation?: boolean}} [opts]
   * @returns {Promise<Microphone>}
   */
  static async open(opts = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: opts.echoCancellation ?? true, // keeps the assistant's own voice out of the mic
        noiseSuppression: true,
        autoGainControl: false, // a steady level keeps the voice-activity threshold meaningful
      },
    });
    const ctx = new AudioContext({ latencyHint: "interactive" });
    await ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "makima-mic", { numberOfInputs: 1, numberOfOutputs: 0 });
    ctx.createMediaStreamSource(stream).connect(node);
    await ctx.resume();
    return new Microphone(stream, ctx, node, opts.prerollMs ?? 300);
  }

  constructor(stream, ctx, node, prerollMs) {
    super();
    this.stream = stream;
    this.ctx = ctx;
    this.node = node;
    this.sampleRate = ctx.sampleRate;
    this.prerollSamples = Math.round((prerollMs / 1000) * ctx.sampleRate);
    this.recent = []; // the last `prerollMs` of chunks while not recording
    this.recording = null; // chunks while recording
    node.port.onmessage = (e) => this.onWorklet(e.data);
    node.port.postMessage({ type: "capture", on: true });
  }

  onWorklet(msg) {
    if (msg.type === "level") {
      const db = 20 * Math.log10(msg.rms + 1e-9);
      this.dispatchEvent(new CustomEvent("level", { detail: { rms: msg.rms, peak: msg.peak, db } }));
    } else if (msg.type === "samples") {
      if (this.recording) {
        this.recording.push(msg.samples);
        return;
      }
      this.recent.push(msg.samples);
      let kept = this.recent.reduce((n, c) => n + c.length, 0);
      while (this.recent.length > 1 && kept - this.recent[0].length >= this.prerollSamples) {
        kept -= this.recent.shift().length;
      }
    }
  }

  /** Start recording, beginning with the pre-roll. */
  startRecording() {
    this.recording = this.recent;
    this.recent = [];
  }

  /** Seconds recorded so far (0 when not recording). */
  get recordedSeconds() {
    return (this.recording || []).reduce((n, c) => n + c.length, 0) / this.sampleRate;
  }

  /** @returns {Float32Array} what was recorded since startRecording(), at `sampleRate` */
  stopRecording() {
    const chunks = this.recording || [];
    this.recording = null;
    const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Release the microphone. */
  close() {
    for (const t of this.stream.getTracks()) t.stop();
    this.ctx.close();
  }
}

/**
 * 16-bit PCM mono WAV of `samples`.
 * @param {Float32Array} samples in [-1, 1]
 * @param {number} sampleRate
 * @returns {Blob}
 */
export function encodeWav(samples, sampleRate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const x = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, Math.round(x * 32767), true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}
