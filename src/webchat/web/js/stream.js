// One conversation's live state: hydration from /api/timeline, then /ws frames in seq order.
//
// The client contract of the HTTP API: open the socket and buffer its frames, fetch the snapshot,
// apply it, then replay the buffered frames whose seq is above the snapshot version; from then on
// apply each frame whose seq is above the last one applied. A frame at or below that version is a
// duplicate and is ignored. On a dropped socket the client reconnects with exponential backoff and
// hydrates again, so nothing is lost and nothing is shown twice.
//
// `project` mirrors the server's projector (webchat/events/projector.py): the same frames give the
// same entities as the snapshot, so a live transcript and a reloaded one are identical.

import { fetchJSON } from "./lib.js";

const LLM_IDS = ["runtime_key", "inference_id", "turn_id"];
const USER_IDS = ["turn_id", "runtime_key"];

function ids(event, names) {
  const meta = event.metadata || {};
  const out = {};
  for (const name of names) {
    if (meta[name] !== undefined && meta[name] !== null && meta[name] !== "") out[name] = String(meta[name]);
  }
  return out;
}

function base(prev, kind, defaults) {
  return prev && prev.kind === kind ? { ...prev.props } : { ...defaults };
}

function assistantDefaults() {
  return { role: "assistant", content: "", streaming: true, runtime_key: "", inference_id: "", turn_id: "" };
}

function toolDefaults() {
  return { name: "", input: null, status: "running", runtime_key: "", inference_id: "", turn_id: "" };
}

function entity(event, prev, kind, props) {
  return {
    id: event.id,
    kind,
    created_at_ms: prev ? prev.created_at_ms : Date.now(),
    updated_at_ms: Date.now(),
    version: event.seq,
    props,
  };
}

// The entities an event creates or changes, given a lookup of the current ones.
export function project(event, lookup) {
  const data = event.data || {};
  const meta = event.metadata || {};
  if (event.type === "timeline.upsert") {
    const raw = data.entity;
    if (!raw || typeof raw !== "object" || !raw.kind) return [];
    const id = String(raw.id || event.id);
    const prev = lookup(id);
    return [
      {
        id,
        kind: String(raw.kind),
        created_at_ms: prev ? prev.created_at_ms : Date.now(),
        updated_at_ms: Date.now(),
        version: event.seq,
        props: raw.props && typeof raw.props === "object" ? raw.props : {},
      },
    ];
  }
  if (!event.id) return [];
  const prev = lookup(event.id);
  let props;
  switch (event.type) {
    case "chat.message":
    case "chat.queued": {
      props = base(prev, "message", { role: "user", content: "", turn_id: "", runtime_key: "" });
      if (typeof data.content === "string") props.content = data.content;
      Object.assign(props, ids(event, USER_IDS));
      const queued = Boolean(data.queued ?? event.type === "chat.queued");
      if (queued || "queued" in props) props.queued = queued;
      return [entity(event, prev, "message", props)];
    }
    case "llm.start":
      props = { ...assistantDefaults(), ...ids(event, LLM_IDS) };
      if (meta.model) props.model = String(meta.model);
      return [entity(event, prev, "message", props)];
    case "llm.delta":
      props = base(prev, "message", assistantDefaults());
      props.content =
        typeof data.cumulative === "string" ? data.cumulative : String(props.content || "") + String(data.delta ?? "");
      props.streaming = true;
      Object.assign(props, ids(event, LLM_IDS));
      return [entity(event, prev, "message", props)];
    case "llm.final":
      props = base(prev, "message", assistantDefaults());
      if (typeof data.text === "string") props.content = data.text;
      props.streaming = false;
      Object.assign(props, ids(event, LLM_IDS));
      if (meta.model) props.model = String(meta.model);
      if (meta.usage !== undefined && meta.usage !== null) props.usage = meta.usage;
      return [entity(event, prev, "message", props)];
    case "llm.error":
      props = base(prev, "message", assistantDefaults());
      props.streaming = false;
      props.error = { message: String(data.error ?? ""), code: String(data.code ?? "") };
      Object.assign(props, ids(event, LLM_IDS));
      return [entity(event, prev, "message", props)];
    case "tool.start":
      props = toolDefaults();
      props.name = String(data.name ?? "");
      props.input = data.input ?? null;
      Object.assign(props, ids(event, LLM_IDS));
      return [entity(event, prev, "tool_call", props)];
    case "tool.result":
      props = base(prev, "tool_call", toolDefaults());
      props.result = data.result ?? null;
      if (data.error) props.error = String(data.error);
      props.status = data.error ? "error" : "done";
      Object.assign(props, ids(event, LLM_IDS));
      return [entity(event, prev, "tool_call", props)];
    case "tool.done":
      props = base(prev, "tool_call", toolDefaults());
      if (props.status !== "error") props.status = "done";
      Object.assign(props, ids(event, LLM_IDS));
      return [entity(event, prev, "tool_call", props)];
    default:
      return [];
  }
}

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const PING_MS = 25_000;

// Status: "connecting" | "hydrating" | "live" | "reconnecting" | "closed".
export class ConversationStream {
  constructor(convId, { onChange, onStatus, onFrame } = {}) {
    this.convId = convId;
    this.onChange = onChange || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onFrame = onFrame || (() => {});
    this.entities = new Map(); // id -> entity, first-seen order
    this.version = 0; // the seq of the last frame applied (or the snapshot version)
    this.pointer = ""; // the conversation pointer from ws.hello
    this.status = "connecting";
    this.retryInMs = 0;
    this.attempt = 0;
    this.ws = null;
    this.stopped = false;
    this.hydrated = false;
    this.buffer = [];
    this.timer = 0;
    this.pingTimer = 0;
    this.generation = 0;
    this.pendingEmit = false;
  }

  start() {
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.setStatus("closed");
  }

  setStatus(status) {
    this.status = status;
    this.onStatus(status, this);
  }

  list() {
    return [...this.entities.values()];
  }

  emit() {
    // At most one render per animation frame, however fast the deltas come.
    if (this.pendingEmit) return;
    this.pendingEmit = true;
    const run = () => {
      this.pendingEmit = false;
      if (!this.stopped) this.onChange(this.list(), this);
    };
    if (typeof requestAnimationFrame === "function" && document.visibilityState === "visible") {
      requestAnimationFrame(run);
    } else {
      setTimeout(run, 0);
    }
  }

  connect() {
    if (this.stopped) return;
    const generation = ++this.generation;
    this.hydrated = false;
    this.buffer = [];
    this.setStatus(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(wsUrl(`/ws?conv_id=${encodeURIComponent(this.convId)}`));
    this.ws = ws;
    ws.onmessage = (msg) => {
      if (generation !== this.generation) return;
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (!frame || frame.sem !== true || !frame.event) {
        if (frame && frame.error) this.onFrame({ type: "ws.error", data: frame });
        if (frame && frame.code === "unknown_conversation") {
          // No such conversation (or another user's): retrying would not change that.
          this.stopped = true;
          clearTimeout(this.timer);
          clearInterval(this.pingTimer);
          this.setStatus("missing");
        }
        return;
      }
      this.receive(frame.event, generation);
    };
    ws.onclose = () => {
      if (generation !== this.generation || this.stopped) return;
      clearInterval(this.pingTimer);
      this.scheduleReconnect();
    };
    ws.onerror = () => {
      // onclose follows and schedules the reconnect.
    };
  }

  scheduleReconnect() {
    this.attempt += 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.attempt - 1));
    this.retryInMs = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.setStatus("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.retryInMs);
  }

  // Reconnect now (a user asked for it, or the page became visible again).
  reconnectNow() {
    if (this.stopped || this.status === "live" || this.status === "hydrating") return;
    clearTimeout(this.timer);
    this.connect();
  }

  receive(event, generation) {
    this.onFrame(event);
    if (event.type === "ws.hello") {
      this.pointer = String((event.data && event.data.runtime_key) || "");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send("ping");
      }, PING_MS);
      this.hydrate(generation);
      return;
    }
    if (event.type === "ws.pong") return;
    if (!this.hydrated) {
      this.buffer.push(event);
      return;
    }
    this.apply(event);
    this.emit();
  }

  async hydrate(generation) {
    this.setStatus("hydrating");
    let snapshot;
    try {
      const url = `/api/timeline?conv_id=${encodeURIComponent(this.convId)}`;
      snapshot = (await fetchJSON(url)).body;
    } catch {
      if (generation === this.generation && this.ws) this.ws.close(); // onclose retries with backoff
      return;
    }
    if (generation !== this.generation || this.stopped) return;
    const entities = new Map();
    for (const e of snapshot.entities || []) entities.set(e.id, e);
    this.entities = entities;
    this.version = Number(snapshot.version) || 0;
    const buffered = this.buffer.sort((a, b) => a.seq - b.seq);
    this.buffer = [];
    for (const event of buffered) this.apply(event);
    this.hydrated = true;
    this.attempt = 0;
    this.retryInMs = 0;
    this.setStatus("live");
    this.emit();
  }

  // Apply one frame unless it is already reflected (seq at or below the version).
  apply(event) {
    const seq = Number(event.seq);
    if (!Number.isFinite(seq) || seq <= this.version) return false;
    for (const e of project(event, (id) => this.entities.get(id))) {
      this.entities.set(e.id, e);
    }
    this.version = seq;
    return true;
  }
}
