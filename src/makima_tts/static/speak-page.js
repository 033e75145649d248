/**
 * The speak page (`/`): type text, pick a voice, speak or cancel, watch the status line (connecting, model
 * loading, ready with or without the model loaded, generating, speaking, then the result), first-audio time,
 * real-time factor and a live waveform; create voices from a file or a microphone recording.
 * `window.makima` exposes the client, the last utterance and the model state (the browser tests read them).
 */

import { encodeWav, Microphone } from "./mic.js";
import {
  apiFetch,
  askForToken,
  describeError,
  getToken,
  ModelWatch,
  setupTokenForm,
  StatusLine,
  startMeter,
} from "./page-common.js";
import { CloseCode, SpeakClient } from "./speak-client.js";

const $ = (id) => document.getElementById(id);
const status = new StatusLine($("status"), $("progress"));
const speakButton = $("speak");
const cancelButton = $("cancel");
let token = getToken();
let client = null;
let recording = null; // {mic, startedAt} while recording from the microphone
let recorded = null; // {blob, seconds} of the last recording
const started = new Set(); // utterance ids whose audio has started
let note = null; // {text, kind}: the last result or error, shown while nothing else is going on
const model = new ModelWatch(render);

/** What the browser tests read. */
const page = { client: null, last: null, voices: [], model };
window.makima = page;

/** The status line, from the real state: connection, model, what is playing, else the last result. */
function render() {
  const state = client?.state ?? "idle";
  const modelLine = model.line();
  if (state === "idle" || state === "connecting") {
    status.show("Connecting…", "busy");
  } else if (state === "speaking") {
    if ([...started].some((id) => client.utterances.has(id))) status.show("Speaking…", "busy");
    else if (modelLine) status.show(modelLine.text, modelLine.kind, modelLine.progress);
    else status.show(model.state === "loaded" ? "Generating…" : "Loading the model, then speaking…", "busy");
  } else if (state === "ready" && modelLine && note?.kind !== "error") {
    status.show(modelLine.text, modelLine.kind, modelLine.progress);
  } else if (note) {
    status.show(note.text, note.kind);
  } else if (state === "ready") {
    status.show(model.state === "loaded" ? "Ready." : "Ready. The model loads when you first speak.", "ok");
  } else {
    status.show("Disconnected from the server. Speaking reconnects.", "info");
  }
}

function setNote(text, kind) {
  note = { text, kind };
  render();
}

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
  note = null;
  render();
  try {
    model.set(await client.connect());
  } catch (err) {
    setNote(describeError(err), "error");
    if (err.code === "UNAUTHORIZED") askForToken();
    return false;
  }
  model.follow(token);
  await loadVoices();
  return true;
}

function listen(c) {
  const on = (type, handler) => c.addEventListener(type, (e) => c === client && handler(e.detail));
  on("statechange", ({ state }) => {
    speakButton.disabled = state === "connecting";
    cancelButton.disabled = state !== "speaking";
    render();
  });
  on("speaking", ({ utteranceId }) => {
    started.add(utteranceId);
    model.loaded(); // audio comes only from a loaded model
    render();
  });
  on("complete", showMetrics);
  on("error", (err) => {
    if (err.code === "MODEL_LOADING") {
      model.set({ modelState: "loading" });
      model.follow(token);
    }
    setNote(describeError(err), err.code === "TIMEOUT" || err.code === "MODEL_LOADING" ? "info" : "error");
  });
  on("close", ({ code }) => {
    if (code === CloseCode.NORMAL) setNote("Disconnected from the server. Speaking reconnects.", "info");
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
    setNote(`Could not load the voices: ${describeError(err)}`, "error");
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
    setNote("Type some text first.", "error");
    return;
  }
  if (!client || client.state === "closed" || client.state === "idle") {
    if (!(await connect())) return;
  }
  await client.resumeAudio();
  note = null;
  let utterance;
  try {
    utterance = client.speak(text, { voice: $("voice").value || undefined });
  } catch (err) {
    setNote(describeError(err), "error");
    return;
  }
  page.last = utterance;
  let finished = false;
  utterance.done.then(() => (finished = true));
  // the first utterance of a lazily loading server starts the load: show its progress until audio comes
  model.follow(token, () => !finished && !started.has(utterance.id));
  const result = await utterance.done;
  started.delete(utterance.id);
  if (page.last !== utterance) return; // a newer utterance owns the status line
  if (result.stopped || result.type === "cancelled") {
    setNote(`Cancelled after ${seconds(result.playedMs)} of playback.`, "info");
  } else if (result.type === "complete") {
    setNote(`Done — ${seconds(result.message.audioLengthMs)} of audio.`, "ok");
  }
}

async function toggleRecording() {
  const button = $("record");
  if (!recording) {
    try {
      recording = { mic: await Microphone.open({ prerollMs: 0, echoCancellation: false }), startedAt: Date.now() };
    } catch (err) {
      setNote(`The microphone is not available: ${err.message}`, "error");
      return;
    }
    const { mic } = recording;
    mic.startRecording();
    button.textContent = "Stop recording";
    $("record-info").textContent = "Recording… speak now.";
    mic.addEventListener("level", () => {
      if (mic.recording) $("record-info").textContent = `Recording… ${mic.recordedSeconds.toFixed(1)} s; speak now.`;
    });
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
    setNote("Choose an audio file or record one first.", "error");
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
  setNote("Creating the voice…", "busy");
  try {
    const voice = await apiFetch("/api/v1/voices", token, { method: "POST", body: form });
    await loadVoices(voice.id);
    setNote(`Created the voice “${voice.name || voice.id}”; it is selected.`, "ok");
    $("voice-form").reset();
    recorded = null;
    $("record-info").textContent = "";
  } catch (err) {
    setNote(`Could not create the voice: ${describeError(err)}`, "error");
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
