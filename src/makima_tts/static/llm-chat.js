/**
 * The listen page's real LLM: any OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp,
 * OpenAI, …), its reply streamed piece by piece.
 *
 * Routes (the page's settings, listen-settings.js): "simulated" (the canned replies of listen-hooks.js, the
 * default; not handled here), "direct" (this browser calls the endpoint: its URL, model and key are kept in
 * this browser's localStorage and sent only there; the endpoint must allow this page's origin, e.g.
 * OLLAMA_ORIGINS for Ollama or --allowed-origins for vLLM), or "server"
 * (the speech server's /api/v1/llm route, which forwards to the operator's TTS_LLM_PROXY_URL with the
 * operator's key: the page then sends neither URL nor key, only the model name and the conversation).
 */

const SERVER_ROUTE = "/api/v1/llm/chat/completions";

/** An OpenAI-compatible base URL (`http://localhost:11434/v1`) or the full chat-completions address. */
export function chatUrl(base) {
  const trimmed = base.trim().replace(/\/+$/, "");
  return trimmed.endsWith("/chat/completions") ? trimmed : `${trimmed}/chat/completions`;
}

/**
 * A `generateReply` hook (see listen-hooks.js) that asks the configured endpoint.
 * @param {{route: string, url: string, model: string, key: string, system: string}} settings
 * @param {string} token the speech server's access token (used only on the "server" route)
 */
export function chatReply(settings, token) {
  // `history` already ends with the user's turn (`userText`), as the listen page passes it
  return (_userText, { history, signal }) => {
    const messages = [...(settings.system ? [{ role: "system", content: settings.system }] : []), ...history];
    return streamChat(settings, messages, { token, signal });
  };
}

/** Yield the reply's text pieces as the endpoint streams them; returns quietly once `signal` aborts. */
async function* streamChat(settings, messages, { token, signal }) {
  const direct = settings.route === "direct";
  if (direct && !settings.url.trim()) throw new Error("Enter the LLM endpoint's address under Language model.");
  const url = direct ? chatUrl(settings.url) : SERVER_ROUTE;
  const headers = { "Content-Type": "application/json" };
  const bearer = direct ? settings.key : token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const body = JSON.stringify({ model: settings.model || undefined, messages, stream: true });
  let res;
  try {
    res = await fetch(url, { method: "POST", headers, body, signal });
  } catch {
    if (signal.aborted) return;
    throw new Error(`Cannot reach the LLM at ${url}: is it running, and does it allow this page's origin?`);
  }
  if (!res.ok) throw new Error(await failure(res));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (!line.startsWith("data:")) continue; // blank separators, comments, other fields
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const piece = JSON.parse(data).choices?.[0]?.delta?.content;
        if (piece) yield piece;
      }
    }
  } catch (err) {
    if (signal.aborted) return;
    throw new Error(`The LLM's answer broke off: ${err.message}`);
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** The endpoint's error in words (OpenAI's `{"error": {"message"}}` and ours both carry a message). */
async function failure(res) {
  let message = "";
  try {
    const text = await res.text();
    try {
      message = JSON.parse(text).error?.message || text;
    } catch {
      message = text;
    }
  } catch {
    /* no body */
  }
  return `The LLM answered ${res.status}${message ? `: ${message.slice(0, 200)}` : ""}`;
}
