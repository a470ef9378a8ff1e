// Shared helpers and small components of the chat and debug pages.

import { h, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export { render };

// --- HTTP ------------------------------------------------------------------------------------------

export class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// fetch + JSON with the server's `{error, code}` errors turned into HttpError (status 0: no answer).
export async function fetchJSON(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new HttpError(0, "network_error", `the server did not answer (${err.message || err})`);
  }
  let body = null;
  const text = await response.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && globalThis.location && location.pathname !== "/login") {
      // Team mode, and the session is over (or was never there): sign in, then come back here.
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    throw new HttpError(response.status, (body && body.code) || "http_error", message);
  }
  return { status: response.status, body };
}

export function postJSON(url, payload, headers = {}) {
  return fetchJSON(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(payload),
  });
}

// --- ids, text, time -------------------------------------------------------------------------------

export function newId() {
  if (globalThis.crypto && crypto.randomUUID && globalThis.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function shortId(id, n = 8) {
  return id && id.length > n + 1 ? id.slice(0, n) + "…" : id || "";
}

export function shellQuote(value) {
  const s = String(value);
  return /^[A-Za-z0-9._:@%+=,/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function fmtTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function relTime(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString([], { month: "short", day: "numeric" });
}

// A stable colour per runtime key, so the same runtime looks the same everywhere.
// (FNV-1a, spread over the colour wheel by the golden angle; the label is always shown as well.)
export function runtimeHue(key) {
  let hash = 0x811c9dc5;
  for (const ch of String(key)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return Math.round((hash % 1000) * 137.508) % 360;
}

export function runtimeStyle(key) {
  return key ? { "--rt-hue": String(runtimeHue(key)) } : {};
}

export const UNKNOWN_RUNTIME = "unknown runtime";

export function runtimeLabel(key) {
  return key ? key : UNKNOWN_RUNTIME;
}

// --- clipboard -------------------------------------------------------------------------------------

export async function copyText(text) {
  if (navigator.clipboard && globalThis.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection-based copy
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

// A button that copies `text` (or `getText()`) and says so for a moment.
export function CopyButton({ text, getText, label = "Copy", title, className = "", testid }) {
  const [state, setState] = useState("");
  const timer = useRef(0);
  useEffect(() => () => clearTimeout(timer.current), []);
  const onClick = async (ev) => {
    ev.stopPropagation();
    const ok = await copyText(getText ? getText() : text);
    setState(ok ? "Copied" : "Copy failed");
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setState(""), 1500);
  };
  return html`<button
    type="button"
    class=${"btn btn-small copy " + className}
    title=${title || "Copy to the clipboard"}
    data-testid=${testid}
    onClick=${onClick}
  >
    ${state || label}
  </button>`;
}

// Clicks on the copy buttons that the Markdown renderer puts on code blocks (event delegation).
export function installCodeCopy(root = document) {
  root.addEventListener("click", async (ev) => {
    const button = ev.target instanceof Element ? ev.target.closest("button.copy-code") : null;
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("pre code");
    if (!code) return;
    const ok = await copyText(code.textContent || "");
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
}

// --- misc ------------------------------------------------------------------------------------------

export function pretty(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function useInterval(fn, ms, deps = []) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    if (!ms) return undefined;
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms, ...deps]);
}
