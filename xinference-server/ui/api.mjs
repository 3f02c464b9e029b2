// The one door to the server: same-origin fetches of the public API, with the login token.
// Every failure becomes an ApiError carrying the server's status and `detail`.

const TOKEN_KEY = "xinference-rs.token";

/** The bearer token of this tab's login, if any (kept in sessionStorage: gone with the tab). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Stores (or, with null, forgets) the login token. */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused or failed API call: `status` (0 when the server could not be reached) and `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

// Listeners told when the server answers 401 (the app then shows the login form).
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

/** The human-readable reason of an error body: Xinference's `detail`, OpenAI's and Anthropic's `error.message`. */
export function detailOf(body, fallback) {
  if (body && typeof body === "object") {
    const d = body.detail ?? body.error?.message ?? body.message;
    if (typeof d === "string") return d;
    if (d !== undefined) return JSON.stringify(d);
  }
  return fallback;
}

/**
 * Calls the API. `json` is sent as a JSON body, `form` as a URL-encoded form, `body` as is
 * (FormData for uploads). Answers the parsed JSON, or the Response itself with `raw: true`
 * (for streams).
 */
export async function api(path, { method = "GET", json, form, body, signal, raw = false } = {}) {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = `Bearer ${t}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(form).toString();
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `The server cannot be reached (${e.message})`);
  }
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      // Not JSON: the status line is all there is.
    }
    if (response.status === 401) unauthorizedListeners.forEach((fn) => fn());
    throw new ApiError(response.status, detailOf(parsed, `${response.status} ${response.statusText}`));
  }
  if (raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * The JSON events of a server-sent-events response, as an async iterator; ends at `[DONE]`.
 * An `error` payload in the stream is thrown as an ApiError.
 */
export async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event && event.error) throw new ApiError(500, detailOf(event, "stream error"));
      yield event;
    }
  }
}

/** Model types as the registry spells them, in the order the UI shows them. */
export const MODEL_TYPES = ["LLM", "embedding", "rerank", "image", "audio"];

/** Formats a byte count for people. */
export function bytes(n) {
  if (n === null || n === undefined) return "unknown";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
