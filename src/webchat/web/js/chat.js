// The chat page: conversation list, runtime-aware transcript, composer with the runtime selector.
//
// Runtime truth in the UI: every assistant message shows the runtime key of the inference that
// produced it (the entity's own `runtime_key`), never the conversation pointer. The pointer only
// decides what the selector proposes for the NEXT prompt.

import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  CopyButton,
  HttpError,
  UNKNOWN_RUNTIME,
  fetchJSON,
  html,
  installCodeCopy,
  newId,
  postJSON,
  pretty,
  relTime,
  render,
  runtimeLabel,
  runtimeStyle,
  shortId,
  useInterval,
} from "./lib.js";
import { renderMarkdown } from "./markdown.js";
import { ConversationStream } from "./stream.js";

const LAST_PROFILE_KEY = "webchat.lastProfile";
const CONV_REFRESH_MS = 15_000;
const EXAMPLES = [
  "Write a short plan for moving to a new flat",
  "compute (17 + 4) * 23",
  "What did I say earlier?",
];

function profileKey(p) {
  return `${p.registry}/${p.slug}`;
}

function convFromUrl() {
  return new URLSearchParams(location.search).get("conv") || "";
}

function setUrl(convId, replace = false) {
  const url = convId ? `/?conv=${encodeURIComponent(convId)}` : "/";
  if (url === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"]({ conv: convId }, "", url);
}

function storedProfile() {
  try {
    return localStorage.getItem(LAST_PROFILE_KEY) || "";
  } catch {
    return "";
  }
}

function storeProfile(key) {
  try {
    localStorage.setItem(LAST_PROFILE_KEY, key);
  } catch {
    // private mode: the choice is simply not remembered
  }
}

// Entities -> turns: a turn is its user prompt plus what the inference produced (same turn_id).
export function buildTurns(entities) {
  const turns = [];
  const byKey = new Map();
  for (const e of entities) {
    const key = (e.props && e.props.turn_id) || e.id;
    let turn = byKey.get(key);
    if (!turn) {
      turn = { key, items: [], user: null, assistants: [] };
      byKey.set(key, turn);
      turns.push(turn);
    }
    turn.items.push(e);
    if (e.kind === "message" && e.props.role === "user") turn.user = turn.user || e;
    else if (e.kind === "message") turn.assistants.push(e);
  }
  for (const turn of turns) {
    // The runtime that answered (from the inference's own metadata); a turn not answered yet shows
    // the runtime its own request resolved. Empty means unknown, and stays unknown.
    const source = turn.assistants[0] || turn.items.find((e) => e.kind === "tool_call") || turn.user;
    turn.runtime = String((source && source.props.runtime_key) || "");
    turn.pending = turn.assistants.length === 0;
  }
  return turns;
}

// --- components ------------------------------------------------------------------------------------

function RuntimeChip({ runtimeKey, testid, extra = "" }) {
  const known = Boolean(runtimeKey);
  return html`<span
    class=${"rt-chip" + (known ? "" : " rt-unknown") + (extra ? " " + extra : "")}
    style=${runtimeStyle(runtimeKey)}
    data-runtime=${runtimeKey}
    data-testid=${testid}
    >${runtimeLabel(runtimeKey)}</span
  >`;
}

function RuntimeBadge({ entity, debugApi, convId }) {
  const p = entity.props;
  const [open, setOpen] = useState(false);
  const key = String(p.runtime_key || "");
  const model = p.model ? String(p.model) : "";
  // Until llm.final the model is the one requested; after it, the one that served the answer.
  const served = Boolean(model && !p.streaming && !p.error);
  const usage = p.usage && typeof p.usage === "object" ? p.usage : null;
  const title = [
    `runtime: ${runtimeLabel(key)}`,
    model ? `${served ? "served model" : "requested model"}: ${model}` : "",
    `inference: ${p.inference_id || "unknown"}`,
  ]
    .filter(Boolean)
    .join("\n");
  const onKey = (ev) => {
    if (ev.key === "Escape") setOpen(false);
  };
  return html`<span class="badge-wrap" onKeyDown=${onKey}>
    <button
      type="button"
      class=${"rt-badge" + (key ? "" : " rt-unknown")}
      style=${runtimeStyle(key)}
      title=${title}
      aria-expanded=${open ? "true" : "false"}
      data-testid="runtime-badge"
      data-runtime=${key}
      data-inference=${p.inference_id || ""}
      onClick=${() => setOpen(!open)}
    >
      <span class="rt-key">${runtimeLabel(key)}</span>
      ${served ? html`<span class="rt-model">${model}</span>` : null}
    </button>
    ${open
      ? html`<div class="badge-pop" role="dialog" aria-label="Inference details" data-testid="badge-details">
          <dl>
            <dt>Runtime</dt>
            <dd>${key || html`<em>${UNKNOWN_RUNTIME}</em> (not recorded for this turn)`}</dd>
            <dt>${served ? "Served model" : "Model"}</dt>
            <dd>${model ? (served ? model : `${model} (requested)`) : html`<em>not known</em>`}</dd>
            <dt>Inference</dt>
            <dd>
              <code class="wrap">${p.inference_id || "unknown"}</code>
              ${p.inference_id ? html`<${CopyButton} text=${p.inference_id} title="Copy the inference id" />` : null}
            </dd>
            <dt>Turn</dt>
            <dd><code class="wrap">${p.turn_id || "unknown"}</code></dd>
            ${usage
              ? html`<dt>Tokens</dt>
                  <dd>${usage.input_tokens ?? "?"} in · ${usage.output_tokens ?? "?"} out</dd>`
              : null}
          </dl>
          ${debugApi && p.turn_id
            ? html`<a
                class="btn btn-small"
                href=${`/debug?conv=${encodeURIComponent(convId)}&turn=${encodeURIComponent(p.turn_id)}`}
                >Inspect this turn</a
              >`
            : null}
        </div>`
      : null}
  </span>`;
}

function Markdown({ text }) {
  const markup = useMemo(() => renderMarkdown(text), [text]);
  return html`<div class="md" dangerouslySetInnerHTML=${{ __html: markup }}></div>`;
}

function UserMessage({ entity, turnRuntime }) {
  const p = entity.props;
  return html`<div class="msg msg-user" data-testid="message" data-role="user" data-entity=${entity.id}>
    <div class="bubble">
      <div class="user-text">${p.content}</div>
      ${p.queued
        ? html`<div class="queued" data-testid="queued">
            <span class="chip chip-queued">Queued</span> runs after the current answer, on
            <${RuntimeChip} runtimeKey=${turnRuntime} />
          </div>`
        : null}
    </div>
  </div>`;
}

function AssistantMessage({ entity, debugApi, convId, onRetry }) {
  const p = entity.props;
  const error = p.error && typeof p.error === "object" ? p.error : null;
  return html`<div
    class=${"msg msg-assistant" + (error ? " has-error" : "")}
    data-testid="message"
    data-role="assistant"
    data-runtime=${p.runtime_key || ""}
    data-entity=${entity.id}
  >
    <div class="msg-head">
      <${RuntimeBadge} entity=${entity} debugApi=${debugApi} convId=${convId} />
      ${p.streaming ? html`<span class="streaming" aria-label="Answer is streaming">●●●</span>` : null}
    </div>
    ${p.content ? html`<${Markdown} text=${p.content} />` : p.streaming ? html`<div class="md muted">…</div>` : null}
    ${error
      ? html`<div class="msg-error" role="alert" data-testid="message-error">
          <div>
            <strong>This answer failed</strong>${error.code ? html` <code>${error.code}</code>` : null}${": "}${error.message}
          </div>
          ${onRetry
            ? html`<button type="button" class="btn btn-small" data-testid="retry" onClick=${onRetry}>
                Retry
              </button>`
            : null}
        </div>`
      : null}
  </div>`;
}

function ToolCard({ entity }) {
  const p = entity.props;
  const status = String(p.status || "running");
  return html`<div class="tool-card" data-testid="tool-card" data-status=${status}>
    <div class="tool-head">
      <span class="tool-label">Tool</span>
      <strong class="tool-name">${p.name || "tool"}</strong>
      <span class=${"chip chip-" + status}>${status}</span>
    </div>
    <div class="tool-body">
      <div class="tool-part">
        <div class="tool-part-label">Input</div>
        <pre>${pretty(p.input)}</pre>
      </div>
      ${p.result !== undefined || p.error
        ? html`<div class="tool-part">
            <div class="tool-part-label">${p.error ? "Error" : "Result"}</div>
            <pre class=${p.error ? "tool-error" : ""}>${p.error ? p.error : pretty(p.result)}</pre>
          </div>`
        : null}
    </div>
  </div>`;
}

function SwitchMarker({ from, to }) {
  return html`<div class="switch-marker" role="separator" data-testid="switch-marker" data-from=${from} data-to=${to}>
    <span>Runtime switched</span>
    <${RuntimeChip} runtimeKey=${from} />
    <span aria-hidden="true">→</span>
    <span class="sr-only">to</span>
    <${RuntimeChip} runtimeKey=${to} />
  </div>`;
}

function Transcript({ turns, debugApi, convId, onRetry }) {
  const rows = [];
  turns.forEach((turn, index) => {
    const prev = turns[index - 1];
    if (prev && prev.runtime !== turn.runtime) {
      rows.push(html`<${SwitchMarker} key=${"switch:" + turn.key} from=${prev.runtime} to=${turn.runtime} />`);
    }
    const retry = turn.user ? () => onRetry(turn.user.props.content) : null;
    rows.push(html`<div class="turn" key=${turn.key} data-testid="turn" data-runtime=${turn.runtime}>
      ${turn.items.map((e) => {
        if (e.kind === "tool_call") return html`<${ToolCard} key=${e.id} entity=${e} />`;
        if (e.kind !== "message") return null;
        if (e.props.role === "user") return html`<${UserMessage} key=${e.id} entity=${e} turnRuntime=${turn.runtime} />`;
        return html`<${AssistantMessage}
          key=${e.id}
          entity=${e}
          debugApi=${debugApi}
          convId=${convId}
          onRetry=${retry}
        />`;
      })}
    </div>`);
  });
  return html`<div class="transcript-inner">${rows}</div>`;
}

function EmptyState({ profiles, onExample }) {
  return html`<div class="empty" data-testid="empty-state">
    <h2>Start a conversation</h2>
    <p>
      Pick a runtime below, type a prompt and press <kbd>Enter</kbd>. Every answer carries a badge with the runtime
      that produced it, and you can switch runtime at any point: the next prompt goes to the new runtime with the
      whole conversation so far.
    </p>
    ${profiles.length
      ? html`<ul class="profile-list">
          ${profiles.map(
            (p) => html`<li key=${profileKey(p)}>
              <${RuntimeChip} runtimeKey=${p.slug} />
              <span><strong>${p.display_name || p.slug}</strong> — ${p.description}</span>
            </li>`,
          )}
        </ul>`
      : null}
    <div class="examples">
      <span class="muted">Try:</span>
      ${EXAMPLES.map(
        (text) => html`<button type="button" class="btn btn-small" key=${text} onClick=${() => onExample(text)}>
          ${text}
        </button>`,
      )}
    </div>
  </div>`;
}

function Sidebar({ convs, convId, draftTitle, onOpen, onNew, debugApi, me, onSignOut, open, onClose }) {
  const now = Date.now();
  const items = convs.slice();
  if (convId && !items.some((c) => c.conv_id === convId)) {
    items.unshift({ conv_id: convId, title: draftTitle, resolved_runtime_key: "", last_activity_ms: 0 });
  }
  return html`<nav class=${"sidebar" + (open ? " open" : "")} aria-label="Conversations">
    <div class="sidebar-head">
      <a class="brand" href="/">web-chat</a>
      <button type="button" class="btn btn-primary" data-testid="new-conversation" onClick=${onNew}>
        New conversation
      </button>
      <button type="button" class="btn btn-small only-narrow" onClick=${onClose} aria-label="Close the list">
        Close
      </button>
    </div>
    <ul class="conv-list" data-testid="conversation-list">
      ${items.length === 0 ? html`<li class="muted conv-none">No conversations yet.</li>` : null}
      ${items.map(
        (c) => html`<li key=${c.conv_id}>
          <a
            href=${`/?conv=${encodeURIComponent(c.conv_id)}`}
            class=${"conv-item" + (c.conv_id === convId ? " current" : "")}
            aria-current=${c.conv_id === convId ? "page" : undefined}
            data-testid="conversation-item"
            data-conv=${c.conv_id}
            onClick=${(ev) => {
              if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
              ev.preventDefault();
              onOpen(c.conv_id);
            }}
          >
            <span class="conv-title">${c.title || "Untitled conversation"}</span>
            <span class="conv-meta">
              ${c.resolved_runtime_key
                ? html`<span class="muted">next:</span> <${RuntimeChip} runtimeKey=${c.resolved_runtime_key} />`
                : null}
              <span class="muted">${relTime(c.last_activity_ms, now)}</span>
            </span>
          </a>
        </li>`,
      )}
    </ul>
    <div class="sidebar-foot">
      ${debugApi ? html`<a href="/debug" data-testid="debug-link">Debug inspector</a>` : null}
      <a href="/help">Help</a>
      ${me && me.mode === "team"
        ? html`<span class="signed-in" data-testid="signed-in"
            >Signed in as <strong>${me.username}</strong>${me.role === "admin" ? " (admin)" : ""}</span
          >
          <button type="button" class="btn btn-small" data-testid="sign-out" onClick=${onSignOut}>Sign out</button>`
        : null}
    </div>
  </nav>`;
}

function StatusLine({ status, stream, onReconnect }) {
  if (!stream) return null;
  const labels = {
    connecting: "connecting…",
    hydrating: "loading…",
    live: "live",
    reconnecting: `reconnecting${stream.retryInMs ? ` in ${Math.ceil(stream.retryInMs / 1000)} s` : "…"}`,
    closed: "closed",
    missing: "not found",
  };
  return html`<span class=${"conn conn-" + status} data-testid="connection" data-status=${status}>
    <span class="dot" aria-hidden="true"></span>${labels[status] || status}
    ${status === "reconnecting"
      ? html`<button type="button" class="btn btn-small" onClick=${onReconnect}>Reconnect now</button>`
      : null}
  </span>`;
}

function Composer({
  profiles,
  selectedKey,
  onSelect,
  lastRuntime,
  draft,
  setDraft,
  onSend,
  sending,
  postError,
  notice,
  textareaRef,
}) {
  const selected = profiles.find((p) => profileKey(p) === selectedKey);
  const selectedSlug = selected ? selected.slug : "";
  const switching = Boolean(selected && lastRuntime !== null && lastRuntime !== selectedSlug);
  useEffect(() => {
    const area = textareaRef.current;
    if (!area) return;
    area.style.height = "auto";
    area.style.height = Math.min(area.scrollHeight, 240) + "px";
  }, [draft]);
  const onKeyDown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      onSend();
    }
  };
  return html`<form
    class="composer"
    onSubmit=${(ev) => {
      ev.preventDefault();
      onSend();
    }}
  >
    ${postError
      ? html`<div class="post-error" role="alert" data-testid="post-error">
          <span>Not sent: ${postError.message}${postError.code ? html` <code>${postError.code}</code>` : null}</span>
          ${postError.retry
            ? html`<button type="button" class="btn btn-small" data-testid="post-retry" onClick=${postError.retry}>
                Retry
              </button>`
            : null}
        </div>`
      : null}
    ${notice ? html`<div class="notice" role="status" data-testid="notice">${notice}</div>` : null}
    <div class="composer-row">
      <label class="sr-only" for="prompt">Message</label>
      <textarea
        id="prompt"
        ref=${textareaRef}
        rows="1"
        placeholder="Message (Enter to send, Shift+Enter for a new line)"
        value=${draft}
        onInput=${(ev) => setDraft(ev.currentTarget.value)}
        onKeyDown=${onKeyDown}
        data-testid="prompt"
      ></textarea>
      <button type="submit" class="btn btn-primary" disabled=${sending || !draft.trim()} data-testid="send">
        Send
      </button>
    </div>
    <div class="composer-tools">
      <label for="runtime-select">Runtime for the next prompt</label>
      <select
        id="runtime-select"
        value=${selectedKey}
        onChange=${(ev) => onSelect(ev.currentTarget.value)}
        data-testid="runtime-select"
      >
        ${!selected ? html`<option value="">server default</option>` : null}
        ${profiles.map(
          (p) => html`<option key=${profileKey(p)} value=${profileKey(p)}>
            ${p.display_name && p.display_name.toLowerCase() !== p.slug ? `${p.slug} — ${p.display_name}` : p.slug}
            ${profiles.filter((q) => q.slug === p.slug).length > 1 ? ` (${p.registry})` : ""}
          </option>`,
        )}
      </select>
      ${switching
        ? html`<span class="switch-hint" data-testid="switch-hint">
            switches from <${RuntimeChip} runtimeKey=${lastRuntime} />
          </span>`
        : null}
      <span class="hint muted">Enter sends · Shift+Enter adds a line</span>
    </div>
  </form>`;
}

// --- the app ---------------------------------------------------------------------------------------

function App() {
  const [profiles, setProfiles] = useState([]);
  const [cookieKey, setCookieKey] = useState("");
  const [debugApi, setDebugApi] = useState(false);
  const [me, setMe] = useState(null);
  const [convs, setConvs] = useState([]);
  const [convId, setConvId] = useState(convFromUrl());
  const [entities, setEntities] = useState([]);
  const [status, setStatus] = useState("closed");
  const [pointer, setPointer] = useState("");
  const [explicit, setExplicit] = useState({}); // convId ("" = new) -> profile key chosen by the user
  const [draft, setDraft] = useState("");
  const [sending, setSending] = useState(false);
  const [postError, setPostError] = useState(null);
  const [notice, setNotice] = useState("");
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const [loadError, setLoadError] = useState("");
  const streamRef = useRef(null);
  const textareaRef = useRef(null);
  const transcriptRef = useRef(null);
  const stickToBottom = useRef(true);

  const refreshConvs = useCallback(async () => {
    try {
      const { body } = await fetchJSON("/api/conversations?limit=200");
      setConvs(body.items || []);
    } catch {
      // the list is a convenience; the conversation itself keeps working
    }
  }, []);

  useEffect(() => {
    installCodeCopy(document);
    (async () => {
      try {
        const [profilesRes, cookieRes, health, meRes] = await Promise.all([
          fetchJSON("/api/chat/profiles"),
          fetchJSON("/api/chat/profile").catch(() => null),
          fetchJSON("/healthz").catch(() => null),
          fetchJSON("/api/auth/me").catch(() => null),
        ]);
        if (meRes && meRes.body) setMe(meRes.body);
        setProfiles(profilesRes.body || []);
        if (cookieRes && cookieRes.body) setCookieKey(`${cookieRes.body.registry}/${cookieRes.body.profile}`);
        setDebugApi(Boolean(health && health.body && health.body.debug_api));
      } catch (err) {
        setLoadError(`Could not load the runtimes: ${err.message}`);
      }
    })();
    refreshConvs();
    const onPop = () => {
      setPostError(null);
      setNotice("");
      setConvId(convFromUrl());
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  useInterval(refreshConvs, CONV_REFRESH_MS);

  // One stream per open conversation.
  useEffect(() => {
    setEntities([]);
    setPointer("");
    stickToBottom.current = true;
    if (!convId) {
      setStatus("closed");
      streamRef.current = null;
      return undefined;
    }
    let refreshTimer = 0;
    const stream = new ConversationStream(convId, {
      // A pointer never goes back to empty: '' from an early ws.hello must not hide a known one.
      onChange: (list, s) => {
        setEntities(list);
        if (s.pointer) setPointer(s.pointer);
      },
      onStatus: (st, s) => {
        setStatus(st);
        if (s.pointer) setPointer(s.pointer);
      },
      onFrame: (event) => {
        if (event.type === "ws.error" && event.data && event.data.code === "unknown_conversation") {
          setNotice("This conversation does not exist, or it is not yours.");
          return;
        }
        if (event.type === "llm.final" || event.type === "llm.error" || event.type === "chat.message") {
          clearTimeout(refreshTimer);
          refreshTimer = setTimeout(refreshConvs, 300);
        }
      },
    });
    streamRef.current = stream;
    stream.start();
    const onVisible = () => {
      if (document.visibilityState === "visible") stream.reconnectNow();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      clearTimeout(refreshTimer);
      document.removeEventListener("visibilitychange", onVisible);
      stream.stop();
    };
  }, [convId]);

  const turns = useMemo(() => buildTurns(entities), [entities]);
  const lastRuntime = turns.length ? turns[turns.length - 1].runtime : null;

  // Keep the newest message in view while streaming, unless the reader scrolled up.
  useEffect(() => {
    const el = transcriptRef.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  }, [entities]);
  const onScroll = () => {
    const el = transcriptRef.current;
    if (el) stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };

  // What the selector shows: the user's choice for this conversation, else the conversation pointer,
  // else (new conversation) the last runtime chosen in this browser, the cookie selection or the default.
  const selectedKey = useMemo(() => {
    const chosen = explicit[convId || ""];
    if (chosen && profiles.some((p) => profileKey(p) === chosen)) return chosen;
    const convPointer = pointer || (convs.find((c) => c.conv_id === convId) || {}).resolved_runtime_key || "";
    if (convId && convPointer) {
      const matches = profiles.filter((p) => p.slug === convPointer);
      const pick = matches.find((p) => profileKey(p) === cookieKey) || matches.find((p) => p.is_default) || matches[0];
      if (pick) return profileKey(pick);
    }
    const remembered = storedProfile();
    if (remembered && profiles.some((p) => profileKey(p) === remembered)) return remembered;
    if (cookieKey && profiles.some((p) => profileKey(p) === cookieKey)) return cookieKey;
    const fallback = profiles.find((p) => p.is_default) || profiles[0];
    return fallback ? profileKey(fallback) : "";
  }, [explicit, convId, pointer, convs, profiles, cookieKey]);

  const signOut = async () => {
    try {
      await postJSON("/api/auth/logout", {});
    } finally {
      location.assign("/login");
    }
  };

  const onSelect = (key) => {
    setExplicit({ ...explicit, [convId || ""]: key });
    storeProfile(key);
  };

  const openConv = (id) => {
    setSidebarOpen(false);
    if (id === convId) return;
    setPostError(null);
    setNotice("");
    setUrl(id);
    setConvId(id);
    setTimeout(() => textareaRef.current && textareaRef.current.focus(), 0);
  };

  const newConv = () => {
    setSidebarOpen(false);
    setUrl("");
    setConvId("");
    setDraft("");
    setPostError(null);
    setNotice("");
    setExplicit({ ...explicit, "": undefined });
    setTimeout(() => textareaRef.current && textareaRef.current.focus(), 0);
  };

  // Send a prompt. `retryOf` resends a failed request with its own idempotency key (never twice).
  const send = async (text, retryOf = null) => {
    const prompt = retryOf ? retryOf.prompt : text;
    if (!prompt || !prompt.trim() || sending) return;
    let id = retryOf ? retryOf.convId : convId;
    const fromDraft = !retryOf && text === draft;
    // A new conversation exists once its first prompt is accepted: the socket opens after that (a socket
    // never creates a conversation), and hydration brings the frames sent in between.
    const isNew = !id;
    if (isNew) id = newId();
    const selected = profiles.find((p) => profileKey(p) === (retryOf ? retryOf.profileKey : selectedKey));
    const request = {
      prompt,
      convId: id,
      profileKey: selected ? profileKey(selected) : "",
      idempotencyKey: retryOf ? retryOf.idempotencyKey : newId(),
    };
    const body = { prompt, conv_id: id, idempotency_key: request.idempotencyKey };
    if (selected) {
      body.profile = selected.slug;
      body.registry = selected.registry;
    }
    setSending(true);
    setPostError(null);
    setNotice("");
    try {
      const res = await postJSON("/chat", body);
      if (fromDraft) setDraft("");
      if (isNew) {
        if (explicit[""]) setExplicit({ ...explicit, [id]: explicit[""], "": undefined });
        setUrl(id);
        setConvId(id);
      }
      // The request moved the conversation pointer (the runtime of the next prompt).
      if (res.body && res.body.runtime_key) {
        setPointer(res.body.runtime_key);
        if (streamRef.current && streamRef.current.convId === id) streamRef.current.pointer = res.body.runtime_key;
      }
      if (res.status === 202) {
        setNotice(
          `Queued (position ${res.body.queue_position} of ${res.body.queue_depth}): it runs on ` +
            `${res.body.runtime_key} after the current answer.`,
        );
      }
      stickToBottom.current = true;
      refreshConvs();
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(0, "error", String(err));
      if (fromDraft && e.status >= 400 && e.status < 500) {
        // keep the draft so that it can be fixed and sent again
      } else if (fromDraft) {
        setDraft("");
      }
      setPostError({ message: e.message, code: e.code, retry: () => send(null, request) });
    } finally {
      setSending(false);
      textareaRef.current && textareaRef.current.focus();
    }
  };

  // The pointer from the socket or the last request, else from the conversation list.
  const shownPointer = pointer || (convId && (convs.find((c) => c.conv_id === convId) || {}).resolved_runtime_key) || "";

  const currentTitle = useMemo(() => {
    const first = entities.find((e) => e.kind === "message" && e.props.role === "user");
    return first ? String(first.props.content).slice(0, 80) : "";
  }, [entities]);

  return html`<div class="layout">
    <a class="skip-link" href="#prompt">Skip to the message box</a>
    <${Sidebar}
      convs=${convs}
      convId=${convId}
      draftTitle=${currentTitle}
      onOpen=${openConv}
      onNew=${newConv}
      debugApi=${debugApi}
      me=${me}
      onSignOut=${signOut}
      open=${sidebarOpen}
      onClose=${() => setSidebarOpen(false)}
    />
    <main class="main">
      <header class="main-head">
        <button
          type="button"
          class="btn btn-small only-narrow"
          aria-label="Show conversations"
          onClick=${() => setSidebarOpen(true)}
        >
          ☰ Chats
        </button>
        <div class="title-block">
          <h1 class="conv-heading">${convId ? currentTitle || "Conversation" : "New conversation"}</h1>
          ${convId
            ? html`<div class="conv-sub">
                <code title=${convId} data-testid="conv-id">${shortId(convId, 13)}</code>
                <${CopyButton} text=${convId} label="Copy id" title="Copy the conversation id" />
                ${shownPointer
                  ? html`<span class="muted pointer-label"
                      >next prompt: <${RuntimeChip} runtimeKey=${shownPointer} testid="pointer" /></span
                    >`
                  : null}
              </div>`
            : null}
        </div>
        <${StatusLine} status=${status} stream=${streamRef.current} onReconnect=${() => streamRef.current?.reconnectNow()} />
      </header>
      ${loadError ? html`<div class="post-error" role="alert">${loadError}</div>` : null}
      <section class="transcript" ref=${transcriptRef} onScroll=${onScroll} aria-label="Transcript" aria-live="polite" data-testid="transcript">
        ${turns.length
          ? html`<${Transcript} turns=${turns} debugApi=${debugApi} convId=${convId} onRetry=${(text) => send(text)} />`
          : status === "live" || !convId
            ? html`<${EmptyState}
                profiles=${profiles}
                onExample=${(text) => {
                  setDraft(text);
                  textareaRef.current && textareaRef.current.focus();
                }}
              />`
            : html`<div class="muted loading">Loading the conversation…</div>`}
      </section>
      <${Composer}
        profiles=${profiles}
        selectedKey=${selectedKey}
        onSelect=${onSelect}
        lastRuntime=${lastRuntime}
        draft=${draft}
        setDraft=${setDraft}
        onSend=${() => send(draft)}
        sending=${sending}
        postError=${postError}
        notice=${notice}
        textareaRef=${textareaRef}
      />
    </main>
    ${sidebarOpen ? html`<div class="scrim only-narrow" onClick=${() => setSidebarOpen(false)}></div>` : null}
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
