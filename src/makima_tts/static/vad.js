/**
 * Energy-based voice-activity detector with hangover, fed one level (dBFS) per 10 ms frame.
 *
 * Speech starts once the level has stayed `marginDb` above the tracked noise floor (and above `minDb`) for
 * about `attackMs`; it ends after `hangoverMs` without such a frame, so short pauses between words do not
 * end a turn. The floor follows quieter input quickly and louder input slowly, so a steady background
 * (fan, hum) does not count as speech. `extraDb` raises the threshold, e.g. while the assistant talks.
 *
 * Events: `speechstart`, `speechend` {durationMs}.
 */

export class VoiceActivityDetector extends EventTarget {
  /**
   * @param {{marginDb?: number, minDb?: number, attackMs?: number, hangoverMs?: number, frameMs?: number}} [opts]
   */
  constructor(opts = {}) {
    super();
    this.marginDb = opts.marginDb ?? 15;
    this.minDb = opts.minDb ?? -45;
    this.attackMs = opts.attackMs ?? 80;
    this.hangoverMs = opts.hangoverMs ?? 600;
    this.frameMs = opts.frameMs ?? 10;
    this.extraDb = 0;
    this.floorDb = -60;
    this.speaking = false;
    this.aboveMs = 0; // evidence for a start: grows on loud frames, shrinks on quiet ones
    this.quietMs = 0; // time since the last loud frame while speaking
    this.speechMs = 0;
  }

  /** The level a frame must exceed to count as speech, in dBFS. */
  get thresholdDb() {
    return Math.max(this.floorDb + this.marginDb, this.minDb) + this.extraDb;
  }

  /**
   * Feed one frame's level.
   * @param {number} db level in dBFS
   * @returns {'start'|'end'|null} the transition this frame caused
   */
  update(db) {
    const loud = db > this.thresholdDb;
    if (!this.speaking) {
      // The floor only learns from non-speech: down fast (0.3/frame), up slowly (~5 s time constant).
      const rate = db < this.floorDb ? 0.3 : 0.002;
      this.floorDb = Math.min(-20, Math.max(-90, this.floorDb + rate * (db - this.floorDb)));
      this.aboveMs = loud ? this.aboveMs + this.frameMs : Math.max(0, this.aboveMs - this.frameMs);
      if (this.aboveMs >= this.attackMs) {
        this.speaking = true;
        this.quietMs = 0;
        this.speechMs = this.aboveMs;
        this.dispatchEvent(new CustomEvent("speechstart"));
        return "start";
      }
      return null;
    }
    this.speechMs += this.frameMs;
    this.quietMs = loud ? 0 : this.quietMs + this.frameMs;
    if (this.quietMs >= this.hangoverMs) {
      this.speaking = false;
      this.aboveMs = 0;
      this.dispatchEvent(new CustomEvent("speechend", { detail: { durationMs: this.speechMs - this.quietMs } }));
      return "end";
    }
    return null;
  }
}
