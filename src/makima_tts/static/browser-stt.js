/**
 * The browser's own speech recognition (the Web Speech API) as the listen page's speech-to-text, where the
 * browser has it (Chrome, Edge, Safari: it may send the audio to the browser maker's service). The
 * recognizer listens to the microphone itself and reports each finished phrase as a `transcript` event
 * ({text}); an `error` event ({error, message}) stops it. Browsers end recognition after a silence: it
 * restarts until stop().
 */

const Recognition = () => window.SpeechRecognition || window.webkitSpeechRecognition;

export function browserRecognitionAvailable() {
  return typeof Recognition() === "function";
}

const MESSAGES = {
  "not-allowed": "the browser did not allow speech recognition",
  "service-not-allowed": "the browser did not allow speech recognition",
  network: "the browser's speech recognition service cannot be reached",
  "audio-capture": "no microphone for speech recognition",
  "language-not-supported": "speech recognition does not support this language",
};

export class BrowserRecognizer extends EventTarget {
  /** @param {string} [lang] a BCP 47 tag ("en-US"); the browser's language when absent */
  constructor(lang) {
    super();
    this.lang = lang;
    this.running = false;
    this.recognition = null;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.listen();
  }

  stop() {
    this.running = false;
    this.recognition?.abort();
    this.recognition = null;
  }

  listen() {
    const recognition = new (Recognition())();
    recognition.continuous = true;
    recognition.interimResults = false;
    if (this.lang) recognition.lang = this.lang;
    recognition.onresult = (e) => {
      for (let i = e.resultIndex; i < e.results.length; i++) {
        const text = e.results[i].isFinal ? e.results[i][0].transcript.trim() : "";
        if (text) this.dispatchEvent(new CustomEvent("transcript", { detail: { text } }));
      }
    };
    recognition.onerror = (e) => {
      if (e.error === "no-speech" || e.error === "aborted") return; // silence, or our own stop()
      this.running = false;
      const message = `Speech recognition stopped: ${MESSAGES[e.error] || e.error}.`;
      this.dispatchEvent(new CustomEvent("error", { detail: { error: e.error, message } }));
    };
    recognition.onend = () => {
      if (this.running && this.recognition === recognition) this.listen();
    };
    this.recognition = recognition;
    recognition.start();
  }
}
