/**
 * ==== HOOKS of the listen page: where a real speech-to-text engine and a real LLM plug in. ====
 *
 * The page calls `transcribe` when the user stops talking and streams the pieces `generateReply` yields
 * into the speech client (`append` … `end`), so speech starts before the reply is complete. Both take an
 * AbortSignal: when the user talks over the assistant (barge-in) the signal aborts; stop work and return.
 *
 * To plug in your own, either edit this file, or define `window.makimaHooks = {transcribe, generateReply,
 * settings}` (any subset) in a script that runs before /static/listen-page.js.
 *
 * The versions here are SIMULATIONS: no recognition happens and the replies are canned.
 */

const query = new URLSearchParams(location.search);

/**
 * Session settings. `contractId` is passed through in the `start` message (e.g. to tie the session to a
 * conversation or billing contract on your side); `voice`/`language` choose the voice.
 * From the page address: /listen?contractId=…&voice=…&language=…
 */
export const settings = {
  contractId: query.get("contractId") || undefined,
  voice: query.get("voice") || undefined,
  language: query.get("language") || undefined,
};

/**
 * HOOK — speech-to-text. Replace with a real recognizer (a server endpoint, a WASM model, …).
 * @param {Float32Array} audio the user's turn, mono, in [-1, 1] (it starts with ~300 ms of pre-roll)
 * @param {number} sampleRate of `audio`
 * @param {{signal: AbortSignal}} ctx
 * @returns {Promise<string>} what the user said ("" to ignore the turn)
 */
export async function transcribe(audio, sampleRate, { signal }) {
  await sleep(150, signal); // pretend to work
  return `(simulated transcript of ${(audio.length / sampleRate).toFixed(1)} s of speech)`;
}

const REPLIES = [
  "I heard you. This reply is streamed to the speech server a few words at a time, the way a language model " +
    "produces it, so the audio starts before the sentence is finished. Start talking while I speak and I will stop.",
  "Of course. Streaming text in and audio out keeps the delay short: the first eighty milliseconds of sound " +
    "can play while the rest of the answer is still being written. Interrupt me whenever you like.",
  "Here is another answer. Real applications replace this simulated model with their own, and the " +
    "interruption tells them how much of the reply the listener actually heard before talking.",
];
let replyIndex = 0;

/**
 * HOOK — the LLM. Replace with a real model: yield its text as it streams (tokens or words).
 * @param {string} userText what the user said
 * @param {{history: Array<{role: 'user'|'assistant', content: string}>, signal: AbortSignal}} ctx
 *   history: the conversation so far, ending with this user turn; an interrupted reply holds only the text
 *   the user heard (and is left out when nothing of it was heard)
 * @returns {AsyncIterable<string>} pieces of the reply
 */
export async function* generateReply(userText, { signal }) {
  const reply = REPLIES[replyIndex++ % REPLIES.length];
  const words = reply.split(/(?<= )/); // keep the spaces
  await sleep(200, signal); // "time to first token"
  for (let i = 0; i < words.length && !signal.aborted; ) {
    const n = 1 + Math.floor(Math.random() * 3);
    yield words.slice(i, i + n).join("");
    i += n;
    await sleep(40 + Math.random() * 80, signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
