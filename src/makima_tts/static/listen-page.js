/**
 * The listen page (`/listen`): a voice loop. The microphone feeds an energy voice-activity detector; when
 * the user stops talking their turn goes to the speech-to-text hook (or, chosen under Assistant, the
 * browser's own recognition reports the phrase), the text to the LLM (the simulated hook, or a real
 * OpenAI-compatible endpoint: llm-chat.js), and the reply streams into the speech client piece by piece
 * (`append` … `end`): one utterance that starts speaking at the reply's first words where the server streams
 * text (`client.streamsText`). When the user starts talking while
 * the assistant is answering, the page interrupts it (barge-in): playback stops at once, the server is
 * told how much was heard (`playedMs`), and the reply in the conversation sent to the LLM is cut to the text
 * the user heard (`heardText`; left out when nothing was heard). The status line says the phase (connecting, model loading, idle,
 * listening, hearing, thinking, speaking), the line under the meter the microphone and the last barge-in.
 * `window.makima` exposes the state (the browser tests read it).
 */

import { BrowserRecognizer } from "./browser-stt.js";
import * as defaultHooks from "./listen-hooks.js";
import { setupAssistantForm } from "./listen-settings.js";
import { chatReply } from "./llm-chat.js";
import { Microphone } from "./mic.js";
import {
  askForToken,
  describeError,
  getToken,
  ModelWatch,
  setupTokenForm,
  StatusLine,
  startMeter,
} from "./page-common.js";
import { SpeakClient } from "./speak-client.js";
import { VoiceActivityDetector } from "./vad.js";

const hooks = { ...defaultHooks, ...(window.makimaHooks || {}) };
const settings = { ...defaultHooks.settings, ...(hooks.settings || {}) };
const ECHO_GUARD_DB = 6; // the threshold rises this much while the assistant is audible

const $ = (id) => document.getElementById(id);
const status = new StatusLine($("status"), $("progress"));
const micButton = $("mic");
const token = getToken();
const client = new SpeakClient({
  token,
  voice: settings.voice,
  language: settings.language,
  contractId: settings.contractId, // passed through in `start`
});
const vad = new VoiceActivityDetector();
const recognizer = new BrowserRecognizer();
let assistant = null; // the Assistant settings (listen-settings.js)
const history = [];
let mic = null;
let micLevelDb = -100;
let turn = null; // {abort: AbortController, item: <li>, said: its history entry, utterance} of the reply
let bargedIn = Promise.resolve(); // settles once the last barge-in has cut the history to what was heard
let lastBargeIn = ""; // "Interrupted after 1.2 s of audio." once the user talked over the assistant
const model = new ModelWatch(() => {
  const line = model.line();
  if (line) status.show(line.text, line.kind, line.progress);
});

/** What the browser tests read. */
const page = { client, vad, bargeIns: [], turns: 0, phase: "idle", model };
window.makima = page;

function setPhase(phase, text, kind = "info") {
  page.phase = phase;
  status.show(text, kind);
  showMic();
}

/** The line under the meter: whether the microphone is on and what it hears, and the last barge-in. */
function showMic() {
  const hearing = mic?.recording ? "hearing you" : "listening";
  const state = mic ? `Microphone on — ${hearing}.` : "Microphone off.";
  $("metrics").textContent = lastBargeIn ? `${state} ${lastBargeIn}` : state;
}

function addLine(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("transcript").append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

/** The reply source: a page's own generateReply hook, else the LLM chosen under Assistant, else the simulation. */
function replyHook() {
  if (window.makimaHooks?.generateReply || assistant.route === "simulated") return hooks.generateReply;
  return chatReply(assistant, token);
}

function browserStt() {
  return assistant.stt === "browser";
}

/** The browser's recognition runs while the microphone is on and it is the chosen speech-to-text. */
function applyStt() {
  if (mic && browserStt()) recognizer.start();
  else recognizer.stop();
}

function assistantBusy() {
  return turn !== null || client.state === "speaking";
}

async function ensureConnected() {
  if (client.state === "ready" || client.state === "speaking") return true;
  setPhase("connecting", "Connecting…", "busy");
  try {
    model.set(await client.connect());
    await model.follow(token); // while it loads
    return true;
  } catch (err) {
    setPhase("error", describeError(err), "error");
    if (err.code === "UNAUTHORIZED") askForToken();
    return false;
  }
}

/** The user talked over the assistant: silence it now and drop the rest of the reply. */
function bargeIn() {
  const current = turn;
  turn = null;
  current?.abort.abort();
  bargedIn = (async () => {
    const { playedMs } = await client.interrupt();
    const heardText = current?.utterance ? (await current.utterance.done).heardText : "";
    if (current?.said) keepHeard(current, heardText);
    page.bargeIns.push({ playedMs, heardText, at: performance.now() });
  })().catch((err) => setPhase("error", describeError(err), "error"));
}

/** The interrupted reply: the LLM's history keeps only what was heard (no turn when nothing was, rather
 * than an empty one); the transcript shows the unheard rest struck through. */
function keepHeard({ item, said }, heardText) {
  const full = said.content;
  if (heardText) said.content = heardText;
  else if (history.includes(said)) history.splice(history.indexOf(said), 1);
  item.classList.add("interrupted");
  if (!full.startsWith(heardText)) return;
  const unheard = document.createElement("span");
  unheard.className = "unheard";
  unheard.textContent = full.slice(heardText.length);
  item.replaceChildren(heardText, unheard);
}

/**
 * One assistant turn: (transcribe) → LLM → streamed speech.
 * @param {(signal: AbortSignal) => Promise<string>} getText what the user said
 */
async function respond(getText) {
  if (!(await ensureConnected())) return;
  const abort = new AbortController();
  const mine = { abort, item: null, said: null, utterance: null };
  turn = mine;
  const live = () => turn === mine && !abort.signal.aborted;
  setPhase("thinking", "Thinking…", "busy");
  const userText = await getText(abort.signal);
  await bargedIn; // the history sent to the LLM holds only what was heard of an interrupted reply
  if (!live() || !userText) {
    if (turn === mine) turn = null;
    return;
  }
  page.turns += 1;
  addLine("user", userText);
  history.push({ role: "user", content: userText });
  mine.item = addLine("assistant", "");
  const said = { role: "assistant", content: "" };
  mine.said = said;
  history.push(said);
  let failed = false;
  try {
    for await (const piece of replyHook()(userText, { history: history.slice(0, -1), signal: abort.signal })) {
      if (!live()) break;
      said.content += piece;
      mine.item.textContent = said.content;
      mine.utterance = client.append(piece);
      if (page.phase !== "speaking") setPhase("speaking", "Speaking… (talk to interrupt)", "busy");
    }
  } catch (err) {
    failed = true; // e.g. the LLM cannot be reached or broke off: what it said so far is still spoken
    setPhase("error", describeError(err), "error");
  }
  if (mine.utterance && live()) {
    client.end();
    await mine.utterance.done;
  }
  if (turn === mine) {
    turn = null;
    if (!failed) setPhase(mic ? "listening" : "idle", mic ? "Listening…" : "Ready. Type below or start the microphone.", "ok");
  }
}

function onSpeechStart() {
  const busy = assistantBusy();
  if (busy && !$("barge-in").checked) return; // barge-in is off: ignore speech while the assistant talks
  mic.startRecording();
  if (busy) bargeIn();
  setPhase("hearing", busy ? "Interrupted — go ahead, I am listening." : "Hearing you…", "busy");
}

function onSpeechEnd() {
  if (!mic.recording) return;
  const audio = mic.stopRecording();
  if (browserStt()) {
    // the browser's recognizer reports the phrase itself (a `transcript` event)
    if (!assistantBusy()) setPhase("listening", "Listening…", "ok");
    return;
  }
  const rate = mic.sampleRate;
  respond((signal) => hooks.transcribe(audio, rate, { signal }));
}

async function toggleMic() {
  if (mic) {
    mic.close();
    mic = null;
    applyStt();
    micButton.textContent = "Start microphone";
    if (!assistantBusy()) setPhase("idle", "Ready. Type below or start the microphone.", "ok");
    showMic();
    return;
  }
  if (!(await ensureConnected())) return;
  await client.resumeAudio();
  try {
    mic = await Microphone.open();
    page.mic = mic;
  } catch (err) {
    setPhase("error", `The microphone is not available: ${err.message}`, "error");
    return;
  }
  mic.addEventListener("level", (e) => {
    micLevelDb = e.detail.db;
    vad.extraDb = client.state === "speaking" ? ECHO_GUARD_DB : 0;
    vad.update(micLevelDb);
  });
  micButton.textContent = "Stop microphone";
  applyStt();
  if (!assistantBusy()) setPhase("listening", "Listening…", "ok");
  showMic();
}

vad.addEventListener("speechstart", onSpeechStart);
vad.addEventListener("speechend", onSpeechEnd);
micButton.addEventListener("click", toggleMic);
setupTokenForm(() => location.reload());
assistant = setupAssistantForm((next) => {
  assistant = next;
  applyStt();
});
recognizer.addEventListener("transcript", (e) => {
  if (assistantBusy()) {
    if (!$("barge-in").checked) return; // barge-in is off: what the user says while the assistant talks is dropped
    bargeIn();
  }
  respond(async () => e.detail.text);
});
recognizer.addEventListener("error", (e) => setPhase("error", e.detail.message, "error"));
$("typed").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("typed-text").value.trim();
  if (!text) return;
  $("typed-text").value = "";
  if (assistantBusy()) bargeIn();
  client.resumeAudio();
  respond(async () => text);
});
client.addEventListener("error", (e) => setPhase("error", describeError(e.detail), "error"));
client.addEventListener("interrupted", (e) => {
  lastBargeIn = `Interrupted after ${(e.detail.playedMs / 1000).toFixed(1)} s of audio.`;
  showMic();
});
client.addEventListener("speaking", () => model.loaded()); // audio comes only from a loaded model
const dbToBar = (db) => Math.max(0, (db + 70) / 70);
startMeter($("meter"), {
  analyser: () => client.analyser,
  level: () => dbToBar(micLevelDb),
  threshold: () => (mic ? dbToBar(vad.thresholdDb) : -1),
});
ensureConnected().then((ok) => {
  micButton.disabled = false;
  if (ok) setPhase("idle", "Ready. Type below or start the microphone.", "ok");
});
