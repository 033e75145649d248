/**
 * One utterance as the speech client (speak-client.js) tracks it, and what its handle's `done` settles with:
 * {type, playedMs, stopped, heardText, message}. `heardText` is the text its played audio had read: the
 * server's `cancelled.heardText` when the server cancelled it, else `complete.textMarks` cut at the played
 * position (all of them when it played to its end); "" when neither says anything (an error, a local close).
 */

let idCounter = 0;

/**
 * The heard text at a playback position, from `complete.textMarks` (the rule of server/text_marks.py; keep
 * the two in step).
 * Each mark [ms, text] says that the audio from `ms` on had read `text` as well, so the text heard once
 * `playedMs` of the utterance have played is the join of the texts of the marks before it (`ms < playedMs`;
 * a mark at 0 counts once anything played). It errs towards more text, never less: speech lags the text
 * the talker has read. Give `playedMs` as finely as the marks (3 decimals), Infinity for "played to the end".
 * @param {Array<[number, string]>} marks
 * @param {number} playedMs
 * @returns {string}
 */
export function heardFromMarks(marks, playedMs) {
  return marks.filter(([ms]) => ms < playedMs).map(([, text]) => text).join("");
}

/** An utterance's record: its terminal message, whether audio went to the player (pushed) and finished
 * playing, whether it is being cancelled here (its audio is dropped), and first-audio timing. */
export class Utterance {
  constructor(id) {
    this.id = id || `u${++idCounter}-${Math.random().toString(36).slice(2, 8)}`;
    this.sentAt = performance.now();
    this.firstAudioAt = null;
    this.terminal = null; // complete | cancelled | error message
    this.pushed = false;
    this.playbackDone = false;
    this.cancelling = false;
    this.handle = { id: this.id, done: new Promise((resolve) => (this.resolve = resolve)) };
  }

  /** Whether `done` can settle: the server finished it and its audio stopped playing. */
  get finished() {
    return this.terminal !== null && this.playbackDone;
  }

  /** Settle `done`; `playedMs`: what played of it, to 3 decimals. */
  settle(playedMs) {
    const message = this.terminal;
    const stopped = this.cancelling;
    this.resolve({ type: message.type, playedMs: Math.round(playedMs), stopped, heardText: this.heard(playedMs), message });
  }

  /** The heard text (see the module docstring) once `playedMs` of it played. */
  heard(playedMs) {
    const message = this.terminal;
    if (message.type === "cancelled" && typeof message.heardText === "string") return message.heardText;
    const toTheEnd = message.type === "complete" && !this.cancelling;
    return heardFromMarks(message.textMarks ?? [], toTheEnd ? Infinity : playedMs);
  }
}
