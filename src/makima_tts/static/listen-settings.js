/**
 * The listen page's "Assistant" settings, kept in this browser's localStorage: where replies come from
 * (`route`, `url`, `model`, `key`, `system`: see llm-chat.js) and the speech-to-text (`stt`: "hook", the
 * transcribe hook of listen-hooks.js, or "browser", the browser's own recognition, offered only where the
 * browser has it). `setupAssistantForm` fills the #assistant-form, shows the fields its route uses, and
 * saves what the user submits.
 */

import { browserRecognitionAvailable } from "./browser-stt.js";

const STORAGE_KEY = "makima-tts.assistant";
const DEFAULTS = {
  route: "simulated",
  url: "",
  model: "",
  key: "",
  system: "You are a helpful voice assistant. Answer in a few short, plain spoken sentences.",
  stt: "hook",
};
const FIELDS = { route: "llm-route", url: "llm-url", model: "llm-model", key: "llm-key", system: "llm-system", stt: "stt" };

export function loadAssistantSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}");
  } catch {
    /* unreadable: the defaults */
  }
  const settings = { ...DEFAULTS, ...saved };
  if (settings.stt === "browser" && !browserRecognitionAvailable()) settings.stt = "hook";
  return settings;
}

/**
 * @param {(settings: typeof DEFAULTS) => void} onChange called with the settings the user saved
 * @returns {typeof DEFAULTS} the settings in effect now
 */
export function setupAssistantForm(onChange) {
  const $ = (id) => document.getElementById(id);
  const form = $("assistant-form");
  if (!browserRecognitionAvailable()) $("stt").querySelector("option[value='browser']").remove();
  const settings = loadAssistantSettings();
  for (const [name, id] of Object.entries(FIELDS)) $(id).value = settings[name];
  const showFields = () => {
    for (const label of form.querySelectorAll("[data-route]")) {
      label.hidden = !label.dataset.route.split(" ").includes($("llm-route").value);
    }
  };
  $("llm-route").addEventListener("change", showFields);
  showFields();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = Object.fromEntries(Object.entries(FIELDS).map(([name, id]) => [name, $(id).value.trim()]));
    localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
    onChange(next);
  });
  return settings;
}
