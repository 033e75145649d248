/**
 * AudioWorklet processor "makima-mic": measures the microphone's level and, while asked to, forwards its
 * samples (mono, the context's sample rate) to the main thread.
 *
 * Messages in:   {type: "capture", on: boolean}              start/stop forwarding samples
 * Messages out:  {type: "level", rms, peak}                  every 10 ms of input (linear, 0..1)
 *                {type: "samples", samples: Float32Array}    about every 40 ms while capturing
 */

const LEVEL_S = 0.01;
const CHUNK_S = 0.04;

class MicProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.levelLen = Math.round(LEVEL_S * sampleRate);
    this.sumSq = 0;
    this.peak = 0;
    this.count = 0;
    this.capturing = false;
    this.chunkLen = Math.round(CHUNK_S * sampleRate);
    this.chunk = new Float32Array(this.chunkLen);
    this.fill = 0;
    this.port.onmessage = (e) => {
      if (e.data.type === "capture") this.capturing = e.data.on;
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // not connected yet
    const x = channels[0]; // the first channel is enough for a voice-activity level
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      this.sumSq += v * v;
      const a = v < 0 ? -v : v;
      if (a > this.peak) this.peak = a;
      if (++this.count === this.levelLen) {
        this.port.postMessage({ type: "level", rms: Math.sqrt(this.sumSq / this.count), peak: this.peak });
        this.sumSq = 0;
        this.peak = 0;
        this.count = 0;
      }
      if (this.capturing) {
        this.chunk[this.fill++] = v;
        if (this.fill === this.chunkLen) {
          this.port.postMessage({ type: "samples", samples: this.chunk }, [this.chunk.buffer]);
          this.chunk = new Float32Array(this.chunkLen); // the old buffer now belongs to the main thread
          this.fill = 0;
        }
      }
    }
    if (!this.capturing && this.fill > 0) {
      this.port.postMessage({ type: "samples", samples: this.chunk.slice(0, this.fill) });
      this.fill = 0;
    }
    return true;
  }
}

registerProcessor("makima-mic", MicProcessor);
