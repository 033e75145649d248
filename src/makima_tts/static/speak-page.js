/**
 * The speak page (`/`): type text, pick a voice, speak or cancel, watch the status line, first-audio time,
 * real-time factor and a live waveform; create voices from a file or a microphone recording.
 * `window.makima` exposes the client and the last utterance (the browser tests read them).
 */

import { encodeWav, Microphone } from "./mic.js";
import {
  apiFetch,
  askForToken,
  describeError,
  getToken,
  setupTokenForm,
  StatusLine,
  startMeter,
  waitForModel,
} from "./page-common.js";
import { SpeakClient } from "./speak-client.js";

const $ = (id) => document.getElementById(id);
const status = new StatusLine($("status"), $("progress"));
const speakButton = $("speak");
const cancelButton = $("cancel");
let token = getToken();
let client = null;
let recording = null; // {mic, startedAt} while recording from the microphone
let recorded = null; // {blob, seconds} of the last recording
const started = new Set(); // utterance ids whose audio has started

/** What the browser tests read. */
const page = { client: null, last: null, voices: [] };
window.makima = page;

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** (Re)connect; `fresh` (a new token) replaces the client and its AudioContext. */
async function connect(fresh = false) {
  if (fresh || !client) {
    client?.close();
    client?.audioContext?.close();
    client = new SpeakClient({ token });
    page.client = client;
    listen(client);
  }
  status.show("Connecting…", "busy");
  try {
    const ready = await client.connect();
    if (ready.modelState !== "loaded") await waitForModel(status);
  } catch (err) {
    status.show(describeError(err), "error");
    if (err.code === "UNAUTHORIZED") askForToken();
    return false;
  }
  const lazy = client.readyInfo.modelState !== "loaded";
  status.show(lazy ? "Ready. The model loads when you first speak." : "Ready.", "ok");
  await loadVoices();
  return true;
}

function listen(c) {
  const on = (type, handler) => c.addEventListener(type, (e) => c === client && handler(e.detail));
  on("statechange", ({ state }) => {
    speakButton.disabled = state === "connecting";
    cancelButton.disabled = state !== "speaking";
  });
  on("speaking", ({ utteranceId }) => {
    started.add(utteranceId);
    status.show("Speaking…", "busy");
  });
  on("complete", showMetrics);
  on("error", (err) => status.show(describeError(err), err.code === "TIMEOUT" ? "info" : "error"));
  on("close", ({ code }) => {
    if (code === 1000) status.show("Disconnected from the server. Speaking reconnects.", "info");
  });
}

function showMetrics(m) {
  const rtf = m.audioLengthMs > 0 ? (m.durationMs / m.audioLengthMs).toFixed(2) : "—";
  const ttfa = m.clientTtfaMs ?? m.ttfaMs;
  $("metrics").textContent =
    `First audio ${Math.round(ttfa)} ms · Real-time factor ${rtf} · Audio ${seconds(m.audioLengthMs)}` +
    (m.truncated ? " · stopped at the length limit" : "");
}

async function loadVoices(select) {
  let body;
  try {
    body = await apiFetch("/api/v1/voices", token);
  } catch (err) {
    status.show(`Could not load the voices: ${describeError(err)}`, "error");
    if (err.code === "UNAUTHORIZED") askForToken();
    return;
  }
  page.voices = body.voices;
  const picker = $("voice");
  const chosen = select ?? picker.value ?? body.default;
  picker.replaceChildren(
    ...body.voices.map((v) => {
      const notes = [v.language && v.language !== "auto" ? v.language : null, v.builtIn ? "built-in" : v.mode];
      if (v.provisioned === false) notes.push("not set up on the server");
      const label = `${v.name || v.id} (${notes.filter(Boolean).join(", ")})`;
      const option = new Option(label, v.id, false, v.id === (chosen || body.default));
      option.disabled = v.provisioned === false;
      return option;
    }),
  );
}

async function speak() {
  const text = $("text").value.trim();
  if (!text) {
    status.show("Type some text first.", "error");
    return;
  }
  if (!client || client.state === "closed" || client.state === "idle") {
    if (!(await connect())) return;
  }
  await client.resumeAudio();
  let utterance;
  try {
    utterance = client.speak(text, { voice: $("voice").value || undefined });
  } catch (err) {
    status.show(describeError(err), "error");
    return;
  }
  page.last = utterance;
  status.show("Generating…", "busy");
  let finished = false;
  utterance.done.then(() => (finished = true));
  // A model that is still loading (or loads lazily on this first request) shows its progress meanwhile.
  setTimeout(() => waitForModel(status, () => !finished && !started.has(utterance.id) && page.last === utterance), 300);
  const result = await utterance.done;
  if (page.last !== utterance) return; // a newer utterance owns the status line
  if (result.stopped || result.type === "cancelled") {
    status.show(`Cancelled after ${seconds(result.playedMs)} of playback.`, "info");
  } else if (result.type === "complete") {
    status.show(`Done — ${seconds(result.message.audioLengthMs)} of audio.`, "ok");
  }
}

async function toggleRecording() {
  const button = $("record");
  if (!recording) {
    try {
      recording = { mic: await Microphone.open({ prerollMs: 0, echoCancellation: false }), startedAt: Date.now() };
    } catch (err) {
      status.show(`The microphone is not available: ${err.message}`, "error");
      return;
    }
    recording.mic.startRecording();
    button.textContent = "Stop recording";
    $("record-info").textContent = "Recording… speak now.";
    return;
  }
  const { mic } = recording;
  recording = null;
  const samples = mic.stopRecording();
  mic.close();
  recorded = { blob: encodeWav(samples, mic.sampleRate), seconds: samples.length / mic.sampleRate };
  $("voice-file").value = "";
  button.textContent = "Record again";
  $("record-info").textContent = `Recorded ${recorded.seconds.toFixed(1)} s; it is used unless you pick a file.`;
}

async function createVoice(e) {
  e.preventDefault();
  const file = $("voice-file").files[0];
  if (!file && !recorded) {
    status.show("Choose an audio file or record one first.", "error");
    return;
  }
  const form = new FormData();
  if (file) form.append("audio", file);
  else form.append("audio", recorded.blob, "recording.wav");
  for (const field of ["transcript", "name", "language", "id"]) {
    const value = $(`voice-${field}`).value.trim();
    if (value) form.append(field, value);
  }
  $("voice-submit").disabled = true;
  status.show("Creating the voice…", "busy");
  try {
    const voice = await apiFetch("/api/v1/voices", token, { method: "POST", body: form });
    await loadVoices(voice.id);
    status.show(`Created the voice “${voice.name || voice.id}”; it is selected.`, "ok");
    $("voice-form").reset();
    recorded = null;
    $("record-info").textContent = "";
  } catch (err) {
    status.show(`Could not create the voice: ${describeError(err)}`, "error");
    if (err.code === "UNAUTHORIZED") askForToken();
  } finally {
    $("voice-submit").disabled = false;
  }
}

speakButton.addEventListener("click", speak);
cancelButton.addEventListener("click", () => client?.cancel());
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    speak();
  }
});
$("record").addEventListener("click", toggleRecording);
$("voice-form").addEventListener("submit", createVoice);
setupTokenForm((newToken) => {
  token = newToken;
  connect(true);
});
startMeter($("meter"), { analyser: () => client?.analyser });
connect().finally(() => (speakButton.disabled = false));
