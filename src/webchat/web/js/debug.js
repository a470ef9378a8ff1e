// The debug inspector (/debug): conversations and their pointer, the runtime history of one
// conversation, its turns with their per-turn runtime truth, a turn inspector (phases, block diff,
// provenance, raw YAML/JSON) and the live event stream. Read-only: it only calls /api/debug/*.

import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  CopyButton,
  HttpError,
  UNKNOWN_RUNTIME,
  fetchJSON,
  fmtTime,
  html,
  pretty,
  relTime,
  render,
  runtimeLabel,
  runtimeStyle,
  shellQuote,
  shortId,
  useInterval,
} from "./lib.js";
import { diffBlocks, diffObjects, summarize } from "./diff.js";

const TOKEN_KEY = "webchat.debugToken";
const REFRESH_MS = 2500;
const EVENTS_MS = 1500;
const MAX_EVENTS = 500;
const PHASE_ORDER = ["pre_inference", "post_inference", "post_tools", "final"];

// --- API access (with the optional bearer token) --------------------------------------------------

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function writeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // not remembered
  }
}

let authListener = () => {};

async function api(path) {
  const token = readToken();
  try {
    const { body } = await fetchJSON(path, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
    return body;
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) authListener(true);
    throw err;
  }
}

const enc = encodeURIComponent;

function curl(path) {
  const auth = readToken() ? ` -H "Authorization: Bearer $WEBCHAT_DEBUG_TOKEN"` : "";
  return `curl -s${auth} ${shellQuote(location.origin + path)}`;
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  return { conv: q.get("conv") || "", turn: q.get("turn") || "", session: q.get("session") || "" };
}

function writeUrl(state) {
  const q = new URLSearchParams();
  if (state.conv) q.set("conv", state.conv);
  if (state.session) q.set("session", state.session);
  if (state.turn) q.set("turn", state.turn);
  const url = `/debug${q.toString() ? "?" + q.toString() : ""}`;
  if (url !== location.pathname + location.search) history.pushState(state, "", url);
}

// --- small pieces ----------------------------------------------------------------------------------

function RuntimeChip({ runtimeKey, testid }) {
  return html`<span
    class=${"rt-chip" + (runtimeKey ? "" : " rt-unknown")}
    style=${runtimeStyle(runtimeKey)}
    data-runtime=${runtimeKey}
    data-testid=${testid}
    >${runtimeLabel(runtimeKey)}</span
  >`;
}

function Panel({ title, actions, children, testid, className = "" }) {
  return html`<section class=${"panel " + className} data-testid=${testid}>
    <header class="panel-head">
      <h2>${title}</h2>
      <div class="panel-actions">${actions}</div>
    </header>
    <div class="panel-body">${children}</div>
  </section>`;
}

function ErrorNote({ error }) {
  if (!error) return null;
  return html`<div class="note note-error" role="alert">${error.message || String(error)}${error.code ? html` <code>${error.code}</code>` : null}</div>`;
}

function CodeView({ text, testid, label }) {
  return html`<div class="code-view">
    <div class="code-view-head">
      <span class="muted">${label}</span>
      <${CopyButton} text=${text} />
    </div>
    <pre data-testid=${testid}>${text}</pre>
  </div>`;
}

// --- conversations ---------------------------------------------------------------------------------

function ConversationTable({ items, titles, selected, onSelect, error }) {
  const now = Date.now();
  return html`<${Panel} title="Conversations" testid="debug-conversations">
    <${ErrorNote} error=${error} />
    ${items.length === 0 && !error ? html`<p class="muted">No conversations yet. Chat first, then come back.</p>` : null}
    <div class="table-scroll">
      <table class="grid conv-table">
        <thead>
          <tr>
            <th>conversation</th>
            <th title="resolved_runtime_key: the pointer, the runtime of the NEXT prompt">pointer</th>
            <th>source</th>
            <th title="active sockets · queue depth">sockets · queue</th>
            <th title="last activity">activity</th>
          </tr>
        </thead>
        <tbody>
          ${items.map(
            (c) => html`<tr key=${c.conv_id} class=${c.conv_id === selected ? "selected" : ""} data-conv=${c.conv_id}>
              <td>
                <button type="button" class="linkish" onClick=${() => onSelect(c.conv_id)} data-testid="debug-conv">
                  <code title=${c.conv_id}>${shortId(c.conv_id, 8)}</code>
                </button>
                ${c.stream_running ? html` <span class="chip chip-running">running</span>` : null}
                ${titles[c.conv_id] ? html`<div class="conv-title muted" title=${titles[c.conv_id]}>${titles[c.conv_id]}</div>` : null}
              </td>
              <td><${RuntimeChip} runtimeKey=${c.resolved_runtime_key} /></td>
              <td><span class=${"chip chip-" + c.source}>${c.source}</span></td>
              <td class="num" data-testid="sockets-queue">${c.active_sockets} · ${c.queue_depth}</td>
              <td title=${fmtTime(c.last_activity_ms)}>${relTime(c.last_activity_ms, now)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  <//>`;
}

function RuntimeStrip({ history, onPickTurn }) {
  if (!history) return null;
  const segments = history.segments || [];
  const total = segments.reduce((n, s) => n + s.turns, 0) || 1;
  return html`<div class="strip-wrap">
    ${segments.length === 0 ? html`<p class="muted">No turns recorded yet.</p>` : null}
    <div class="strip" role="list" aria-label="Runtime history" data-testid="runtime-strip">
      ${segments.map(
        (s, i) => html`<button
          type="button"
          role="listitem"
          key=${i}
          class=${"strip-seg" + (s.runtime_key ? "" : " rt-unknown")}
          style=${{ ...runtimeStyle(s.runtime_key), flexGrow: String(s.turns) }}
          title=${`${runtimeLabel(s.runtime_key)}: ${s.turns} turn(s), ${fmtTime(s.from_ms)} – ${fmtTime(s.to_ms)}`}
          data-testid="strip-segment"
          data-runtime=${s.runtime_key}
          data-turns=${s.turns}
          onClick=${() => onPickTurn(s.first_turn_id)}
        >
          <span class="seg-key">${s.runtime_key || "unknown"}</span>
          <span class="seg-turns">${s.turns}</span>
        </button>`,
      )}
    </div>
    <div class="strip-legend muted">
      <span>${total} turn(s) in ${segments.length} segment(s), from the turn rows.</span>
      ${history.unknown_turns
        ? html` <strong data-testid="unknown-turns">${history.unknown_turns} turn(s) of unknown runtime</strong> (not
            recorded; never filled in from the pointer).`
        : null}
      <span>Pointer for the next prompt:</span> <${RuntimeChip} runtimeKey=${history.resolved_runtime_key} />
    </div>
  </div>`;
}

// Phase snapshots (newest first from the API) grouped into turns, oldest turn first.
function groupTurns(items) {
  const byId = new Map();
  for (const s of items) {
    let t = byId.get(s.turn_id);
    if (!t) {
      t = {
        turn_id: s.turn_id,
        session_id: s.session_id,
        runtime_key: s.runtime_key,
        inference_id: s.inference_id,
        phases: [],
        first_ms: s.created_at_ms,
        last_ms: s.created_at_ms,
      };
      byId.set(s.turn_id, t);
    }
    t.phases.push(s.phase);
    t.first_ms = Math.min(t.first_ms, s.created_at_ms);
    t.last_ms = Math.max(t.last_ms, s.created_at_ms);
  }
  const turns = [...byId.values()].sort((a, b) => a.first_ms - b.first_ms || (a.turn_id < b.turn_id ? -1 : 1));
  turns.forEach((t, i) => {
    t.number = i + 1;
    t.phases.reverse();
    t.latest = t.phases[t.phases.length - 1];
  });
  return turns;
}

function TurnTable({ turns, selected, onSelect }) {
  return html`<div class="table-scroll">
    <table class="grid turn-table" data-testid="turn-table">
      <thead>
        <tr>
          <th>#</th>
          <th>turn</th>
          <th>runtime_key</th>
          <th>inference_id</th>
          <th>phases</th>
          <th>updated</th>
        </tr>
      </thead>
      <tbody>
        ${turns.map(
          (t) => html`<tr
            key=${t.turn_id}
            class=${t.turn_id === selected ? "selected" : ""}
            data-testid="turn-row"
            data-turn=${t.turn_id}
            data-runtime=${t.runtime_key}
          >
            <td class="num">${t.number}</td>
            <td>
              <button type="button" class="linkish" onClick=${() => onSelect(t)} data-testid="turn-open">
                <code>${shortId(t.turn_id, 8)}</code>
              </button>
            </td>
            <td><${RuntimeChip} runtimeKey=${t.runtime_key} /></td>
            <td><code title=${t.inference_id || "unknown"}>${t.inference_id ? shortId(t.inference_id, 8) : "—"}</code></td>
            <td class="phases">
              ${t.phases.map((p, i) => html`<span key=${i} class=${"chip phase-" + p}>${p}</span>`)}
            </td>
            <td class="nowrap">${fmtTime(t.last_ms)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

// --- turn inspector --------------------------------------------------------------------------------

function blockText(block) {
  const payload = block.payload || {};
  if (typeof payload.text === "string" && Object.keys(payload).length === 1) return payload.text;
  return pretty(payload);
}

function Block({ block, index, status }) {
  const meta = block.metadata && Object.keys(block.metadata).length ? block.metadata : null;
  return html`<div class=${"block" + (status ? " block-" + status : "")} data-testid="block">
    <div class="block-head">
      ${index !== undefined ? html`<span class="muted num">${index}</span>` : null}
      <span class=${"chip kind-" + block.kind}>${block.kind}</span>
      ${block.role ? html`<span class="muted">${block.role}</span>` : null}
      <code class="muted block-id" title=${block.id || ""}>${block.id || ""}</code>
    </div>
    <pre class="block-body">${blockText(block)}</pre>
    ${meta ? html`<pre class="block-meta">metadata: ${pretty(meta)}</pre>` : null}
  </div>`;
}

function snapshotLabels(items) {
  const seen = {};
  return items.map((s) => {
    seen[s.phase] = (seen[s.phase] || 0) + 1;
    const count = items.filter((x) => x.phase === s.phase).length;
    return count > 1 ? `${s.phase} #${seen[s.phase]}` : s.phase;
  });
}

function DiffView({ snapshots, labels }) {
  const n = snapshots.length;
  const [fromIdx, setFrom] = useState(0);
  const [toIdx, setTo] = useState(Math.max(0, n - 1));
  const [showSame, setShowSame] = useState(false);
  useEffect(() => {
    setFrom(0);
    setTo(Math.max(0, n - 1));
  }, [n]);
  const from = snapshots[Math.min(fromIdx, n - 1)];
  const to = snapshots[Math.min(toIdx, n - 1)];
  const entries = useMemo(
    () => (from && to ? diffBlocks(from.parsed.blocks, to.parsed.blocks) : []),
    [from, to],
  );
  const metaChanges = useMemo(() => {
    if (!from || !to) return [];
    return [
      ...diffObjects(from.parsed.metadata, to.parsed.metadata).map((c) => ({ ...c, path: "metadata." + c.path })),
      ...diffObjects(from.parsed.data, to.parsed.data).map((c) => ({ ...c, path: "data." + c.path })),
    ];
  }, [from, to]);
  if (n < 2) return html`<p class="muted">Only one phase snapshot: nothing to compare.</p>`;
  const counts = summarize(entries);
  const phaseSelect = (value, set, id, label) => html`<label for=${id}>${label}</label>
    <select id=${id} value=${String(value)} onChange=${(ev) => set(Number(ev.currentTarget.value))} data-testid=${id}>
      ${snapshots.map((s, i) => html`<option key=${i} value=${String(i)}>${labels[i]}</option>`)}
    </select>`;
  return html`<div class="diff" data-testid="phase-diff">
    <div class="diff-controls">
      ${phaseSelect(fromIdx, setFrom, "diff-from", "From")} ${phaseSelect(toIdx, setTo, "diff-to", "to")}
      <span class="diff-summary" data-testid="diff-summary">
        <span class="chip diff-added">+${counts.added} added</span>
        <span class="chip diff-removed">−${counts.removed} removed</span>
        <span class="chip diff-changed">~${counts.changed + counts.moved} changed</span>
        <span class="chip">${counts.unchanged} unchanged</span>
      </span>
      <label class="check"
        ><input type="checkbox" checked=${showSame} onChange=${(ev) => setShowSame(ev.currentTarget.checked)} /> show
        unchanged</label
      >
    </div>
    <div class="diff-list">
      ${entries.map((e, i) => {
        if (e.status === "unchanged" && !showSame) return null;
        if (e.status === "added" || e.status === "unchanged") {
          return html`<div key=${i} class=${"diff-entry diff-" + e.status} data-testid="diff-entry" data-status=${e.status}>
            <div class="diff-tag">${e.status === "added" ? "added" : "unchanged"}</div>
            <${Block} block=${e.after} />
          </div>`;
        }
        if (e.status === "removed") {
          return html`<div key=${i} class="diff-entry diff-removed" data-testid="diff-entry" data-status="removed">
            <div class="diff-tag">removed</div>
            <${Block} block=${e.before} />
          </div>`;
        }
        return html`<div key=${i} class="diff-entry diff-changed" data-testid="diff-entry" data-status=${e.status}>
          <div class="diff-tag">${e.status === "moved" ? "moved" : "changed"}: ${e.fields.join(", ") || "position"}</div>
          <div class="diff-pair">
            <div><div class="muted">before</div><${Block} block=${e.before} /></div>
            <div><div class="muted">after</div><${Block} block=${e.after} /></div>
          </div>
        </div>`;
      })}
      ${entries.every((e) => e.status === "unchanged") && !showSame
        ? html`<p class="muted">The two phases hold the same blocks.</p>`
        : null}
    </div>
    <h4>Metadata changes</h4>
    ${metaChanges.length
      ? html`<table class="grid" data-testid="meta-changes">
          <thead><tr><th>path</th><th>change</th><th>before</th><th>after</th></tr></thead>
          <tbody>
            ${metaChanges.map(
              (c) => html`<tr key=${c.path} class=${"diff-" + c.status}>
                <td><code>${c.path}</code></td>
                <td>${c.status}</td>
                <td><code>${c.before === undefined ? "" : JSON.stringify(c.before)}</code></td>
                <td><code>${c.after === undefined ? "" : JSON.stringify(c.after)}</code></td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted" data-testid="meta-changes">
          No metadata changes between these phases (turn metadata belongs to the turn row, so every phase shows it as
          it stands now).
        </p>`}
  </div>`;
}

function metaValue(metadata, names) {
  for (const name of names) {
    if (metadata && metadata[name] !== undefined && metadata[name] !== null && metadata[name] !== "") {
      return metadata[name];
    }
  }
  return undefined;
}

function Provenance({ turn, latest }) {
  const metadata = (latest && latest.parsed && latest.parsed.metadata) || {};
  const runtime = metaValue(metadata, ["webchat.runtime@v1", "geppetto.runtime@v1", "runtime"]);
  const inference = metaValue(metadata, ["webchat.inference@v1"]) || null;
  const error = metaValue(metadata, ["webchat.error@v1"]);
  const metaKey = runtime && typeof runtime === "object" ? runtime.runtime_key : runtime;
  const usage = inference && inference.usage ? inference.usage : null;
  const requested = inference ? inference.request_model : "";
  const served = inference ? inference.response_model : "";
  const row = (label, value, testid) => html`<tr>
    <th>${label}</th>
    <td data-testid=${testid}>${value === undefined || value === null || value === "" ? html`<span class="muted">—</span>` : value}</td>
  </tr>`;
  return html`<div class="provenance" data-testid="provenance">
    <table class="kv">
      <tbody>
        ${row("runtime_key (turn row)", html`<${RuntimeChip} runtimeKey=${turn.runtime_key} testid="turn-runtime" />`)}
        ${row("inference_id (turn row)", turn.inference_id ? html`<code>${turn.inference_id}</code>` : html`<em>${UNKNOWN_RUNTIME}</em>`)}
        ${metaKey !== undefined && String(metaKey) !== turn.runtime_key
          ? row("runtime in metadata", html`<span class="warn">${String(metaKey)} (differs from the turn row)</span>`)
          : null}
        ${runtime && typeof runtime === "object"
          ? html`${row("profile", `${runtime.registry_slug || "?"}/${runtime.profile_slug || "?"} v${runtime.profile_version ?? "?"}`)}
            ${row("fingerprint", html`<code class="wrap">${runtime.runtime_fingerprint || ""}</code>`)}`
          : null}
        ${inference
          ? html`${row("provider", inference.provider)}
            ${row("requested model", html`<code>${requested || "—"}</code>`, "requested-model")}
            ${row(
              "served model",
              html`<code>${served || "—"}</code>${requested && served && requested !== served
                ? html` <span class="chip chip-merged">differs from requested</span>`
                : null}`,
              "served-model",
            )}
            ${row("response id", inference.response_id ? html`<code>${inference.response_id}</code>` : "")}
            ${row("finish reason", inference.finish_reason)}
            ${row(
              "usage",
              usage
                ? `${usage.input_tokens ?? 0} input · ${usage.output_tokens ?? 0} output · ${usage.cached_tokens ?? 0} cached tokens`
                : "",
            )}
            ${row("time to first token", inference.ttft_ms === null || inference.ttft_ms === undefined ? "" : `${inference.ttft_ms} ms`)}
            ${row("duration", inference.duration_ms === undefined ? "" : `${inference.duration_ms} ms`)}
            ${inference.error
              ? row("error", html`<span class="warn">${inference.error.code}: ${inference.error.message}</span>`)
              : null}`
          : row("inference", html`<span class="muted">no webchat.inference@v1 metadata (older row or not run yet)</span>`)}
        ${error && !(inference && inference.error) ? row("error", html`<span class="warn">${pretty(error)}</span>`) : null}
      </tbody>
    </table>
  </div>`;
}

function TurnInspector({ convId, sessionId, turnId, version }) {
  const [doc, setDoc] = useState(null);
  const [error, setError] = useState(null);
  const [tab, setTab] = useState(-1);
  const [view, setView] = useState("blocks");
  const tabRefs = useRef([]);

  useEffect(() => {
    setDoc(null);
    setTab(-1);
  }, [convId, sessionId, turnId]);

  useEffect(() => {
    let cancelled = false;
    api(`/api/debug/turn/${enc(convId)}/${enc(sessionId)}/${enc(turnId)}`)
      .then((body) => {
        if (!cancelled) {
          setDoc(body);
          setError(null);
        }
      })
      .catch((err) => !cancelled && setError(err));
    return () => {
      cancelled = true;
    };
  }, [convId, sessionId, turnId, version]);

  // Chronological order: pre_inference first.
  const snapshots = useMemo(() => {
    if (!doc) return [];
    return doc.items
      .slice()
      .sort((a, b) => a.created_at_ms - b.created_at_ms || PHASE_ORDER.indexOf(a.phase) - PHASE_ORDER.indexOf(b.phase));
  }, [doc]);
  const labels = useMemo(() => snapshotLabels(snapshots), [snapshots]);
  const current = tab >= 0 && tab < snapshots.length ? tab : snapshots.length - 1;
  const snap = snapshots[current];

  const onTabKey = (ev) => {
    let next = null;
    if (ev.key === "ArrowRight") next = (current + 1) % snapshots.length;
    if (ev.key === "ArrowLeft") next = (current - 1 + snapshots.length) % snapshots.length;
    if (ev.key === "Home") next = 0;
    if (ev.key === "End") next = snapshots.length - 1;
    if (next !== null) {
      ev.preventDefault();
      setTab(next);
      tabRefs.current[next] && tabRefs.current[next].focus();
    }
  };

  const turnPath = `/api/debug/turn/${enc(convId)}/${enc(sessionId)}/${enc(turnId)}`;
  const actions = html`<${CopyButton} text=${curl(turnPath)} label="Copy curl" title="Copy the curl command for this turn" testid="copy-turn-curl" />
    <${CopyButton}
      text=${`web-chat turns show ${shellQuote(convId)} ${shellQuote(sessionId)} ${shellQuote(turnId)} --output yaml`}
      label="Copy turns show"
      title="Copy the web-chat command that prints this turn"
    />`;
  return html`<${Panel} title=${html`Turn <code>${shortId(turnId, 13)}</code>`} actions=${actions} testid="turn-inspector" className="inspector">
    <${ErrorNote} error=${error} />
    ${!doc && !error ? html`<p class="muted">Loading…</p>` : null}
    ${doc
      ? html`
          <h3>Provenance</h3>
          <${Provenance} turn=${doc} latest=${snapshots[snapshots.length - 1]} />
          <h3>Phases</h3>
          <div class="tabs" role="tablist" aria-label="Phase snapshots" onKeyDown=${onTabKey}>
            ${snapshots.map(
              (s, i) => html`<button
                type="button"
                role="tab"
                key=${i}
                ref=${(el) => (tabRefs.current[i] = el)}
                id=${"phase-tab-" + i}
                aria-selected=${i === current ? "true" : "false"}
                aria-controls="phase-panel"
                tabindex=${i === current ? "0" : "-1"}
                class=${"tab" + (i === current ? " active" : "")}
                data-testid="phase-tab"
                data-phase=${s.phase}
                onClick=${() => setTab(i)}
              >
                ${labels[i]}
              </button>`,
            )}
          </div>
          ${snap
            ? html`<div class="tab-panel" role="tabpanel" id="phase-panel" aria-labelledby=${"phase-tab-" + current}>
                <div class="view-switch" role="group" aria-label="View">
                  ${["blocks", "yaml", "json"].map(
                    (v) => html`<button
                      type="button"
                      key=${v}
                      class=${"btn btn-small" + (view === v ? " active" : "")}
                      aria-pressed=${view === v ? "true" : "false"}
                      data-testid=${"view-" + v}
                      onClick=${() => setView(v)}
                    >
                      ${v === "blocks" ? "Blocks" : v.toUpperCase()}
                    </button>`,
                  )}
                  <span class="muted">
                    ${snap.parsed.blocks.length} blocks · ${fmtTime(snap.created_at_ms)} · runtime${" "}
                    <${RuntimeChip} runtimeKey=${snap.runtime_key} />
                  </span>
                </div>
                ${view === "blocks"
                  ? html`<div class="blocks" data-testid="phase-blocks">${snap.parsed.blocks.map((b, i) => html`<${Block} key=${i} block=${b} index=${i} />`)}</div>`
                  : view === "yaml"
                    ? html`<${CodeView} text=${snap.payload} testid="raw-yaml" label="payload (YAML)" />`
                    : html`<${CodeView} text=${pretty(snap.parsed)} testid="raw-json" label="parsed (JSON)" />`}
              </div>`
            : null}
          <h3>Diff between phases</h3>
          <${DiffView} snapshots=${snapshots} labels=${labels} />
        `
      : null}
  <//>`;
}

// --- live events -----------------------------------------------------------------------------------

function eventSummary(ev) {
  const data = ev.data || {};
  if (ev.type === "llm.delta") return JSON.stringify(data.delta ?? "");
  if (ev.type === "llm.final") return String(data.text ?? "").slice(0, 120);
  if (ev.type === "chat.message") return `${data.queued ? "[queued] " : ""}${String(data.content ?? "").slice(0, 120)}`;
  if (ev.type === "llm.error") return `${data.code}: ${data.error}`;
  if (ev.type.startsWith("tool.")) return `${data.name || ""} ${data.input ? JSON.stringify(data.input) : ""}${data.result !== undefined ? " → " + JSON.stringify(data.result) : ""}`;
  return JSON.stringify(data).slice(0, 120);
}

// Polls only while the conversation is live in the server (persisted-only ones have no frames, and a
// 404 per poll would be noise).
function EventStream({ convId, live }) {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState("loading");
  const [hideDeltas, setHideDeltas] = useState(false);
  const [paused, setPaused] = useState(false);
  const last = useRef(0);
  const gaps = useRef(0);

  useEffect(() => {
    setEvents([]);
    setState("loading");
    last.current = 0;
    gaps.current = 0;
  }, [convId]);

  const poll = useCallback(async () => {
    try {
      const body = await api(`/api/debug/events/${enc(convId)}?since_seq=${last.current}&limit=${MAX_EVENTS}`);
      const items = body.items || [];
      if (items.length) {
        if (last.current && items[0].seq > last.current + 1) gaps.current += 1;
        last.current = items[items.length - 1].seq;
        setEvents((prev) => [...prev, ...items].slice(-MAX_EVENTS));
      }
      setState("live");
    } catch (err) {
      setState(err instanceof HttpError && err.code === "not_live" ? "not_live" : "error");
    }
  }, [convId]);

  useEffect(() => {
    if (live) poll();
    else if (live === false) setState("not_live");
  }, [poll, live]);
  useInterval(() => live && !paused && poll(), EVENTS_MS, [poll, paused, live]);

  const shown = events.filter((e) => !hideDeltas || e.type !== "llm.delta").slice().reverse();
  const actions = html`<label class="check"
      ><input type="checkbox" checked=${hideDeltas} onChange=${(ev) => setHideDeltas(ev.currentTarget.checked)} /> hide
      deltas</label
    >
    <button type="button" class="btn btn-small" onClick=${() => setPaused(!paused)} aria-pressed=${paused ? "true" : "false"}>
      ${paused ? "Resume" : "Pause"}
    </button>
    <${CopyButton} text=${curl(`/api/debug/events/${enc(convId)}?since_seq=0&limit=100`)} label="Copy curl" />`;
  return html`<${Panel} title="Live event stream" actions=${actions} testid="event-stream">
    ${state === "not_live"
      ? html`<p class="muted">
          This conversation is not in the server's memory (idle and evicted, or from before a restart), so there are no
          recent frames. It becomes live again with its next prompt or socket.
        </p>`
      : null}
    ${state === "error" ? html`<p class="note note-error">Could not read the events.</p>` : null}
    ${gaps.current ? html`<p class="muted">Some frames went by faster than this view polls; showing the newest.</p>` : null}
    ${shown.length
      ? html`<div class="table-scroll events-scroll">
          <table class="grid events">
            <thead><tr><th>seq</th><th>type</th><th>runtime</th><th>summary</th></tr></thead>
            <tbody>
              ${shown.map((item) => {
                const ev = item.frame.event || {};
                const meta = ev.metadata || {};
                return html`<tr key=${item.seq} data-testid="event-row" data-type=${item.type}>
                  <td class="num">${item.seq}</td>
                  <td><span class=${"chip ev-" + item.type.replace(".", "-")}>${item.type}</span></td>
                  <td>${meta.runtime_key !== undefined ? html`<${RuntimeChip} runtimeKey=${meta.runtime_key} />` : ""}</td>
                  <td>
                    <details>
                      <summary>${eventSummary(ev)}</summary>
                      <pre>${pretty(item.frame)}</pre>
                    </details>
                  </td>
                </tr>`;
              })}
            </tbody>
          </table>
        </div>`
      : state === "live"
        ? html`<p class="muted">No frames yet.</p>`
        : null}
  <//>`;
}

// --- one conversation ------------------------------------------------------------------------------

function ConversationDetail({ convId, turnId, sessionId, onSelectTurn, tick }) {
  const [item, setItem] = useState(undefined); // undefined: loading; null: unknown to the server
  const [history, setHistory] = useState(null);
  const [turnItems, setTurnItems] = useState([]);
  const [error, setError] = useState(null);

  useEffect(() => {
    setItem(undefined);
    setHistory(null);
    setTurnItems([]);
    setError(null);
  }, [convId]);

  useEffect(() => {
    let cancelled = false;
    Promise.all([
      api(`/api/debug/conversations/${enc(convId)}`).catch((err) => (err.status === 404 ? null : Promise.reject(err))),
      api(`/api/debug/conversations/${enc(convId)}/runtime-history`).catch((err) =>
        err.status === 404 ? null : Promise.reject(err),
      ),
      api(`/api/debug/turns?conv_id=${enc(convId)}&limit=1000`).catch((err) =>
        err.status === 404 ? { items: [] } : Promise.reject(err),
      ),
    ])
      .then(([conv, hist, turns]) => {
        if (cancelled) return;
        setItem(conv);
        setHistory(hist);
        setTurnItems(turns.items || []);
        setError(null);
      })
      .catch((err) => !cancelled && setError(err));
    return () => {
      cancelled = true;
    };
  }, [convId, tick]);

  const turns = useMemo(() => groupTurns(turnItems), [turnItems]);
  const selectedTurn = turns.find((t) => t.turn_id === turnId) || null;
  // A changed phase list reloads the inspected turn (it may still be running).
  const turnVersion = selectedTurn ? `${selectedTurn.phases.join(",")}:${selectedTurn.last_ms}` : "";
  const session = sessionId || (selectedTurn ? selectedTurn.session_id : "");

  // Deep link with a turn but no session id: fill it in from the turn list.
  useEffect(() => {
    if (turnId && !sessionId && selectedTurn) onSelectTurn(selectedTurn, true);
  }, [turnId, sessionId, selectedTurn]);

  const pickTurn = (id) => {
    const t = turns.find((x) => x.turn_id === id);
    if (t) onSelectTurn(t);
  };

  const actions = html`<a class="btn btn-small" href=${`/?conv=${enc(convId)}`}>Open in chat</a>
    <${CopyButton}
      text=${curl(`/api/debug/conversations/${enc(convId)}/runtime-history`)}
      label="Copy curl"
      title="Copy the curl command for the runtime history"
      testid="copy-curl"
    />
    <${CopyButton}
      text=${`web-chat db history --conv-id ${shellQuote(convId)}`}
      label="Copy db history"
      title="Copy the web-chat db history command for this conversation"
      testid="copy-db-history"
    />`;
  return html`<div class="detail">
    <${Panel} title=${html`Conversation <code>${shortId(convId, 13)}</code>`} actions=${actions} testid="conversation-detail">
      <${ErrorNote} error=${error} />
      ${item
        ? html`<dl class="facts">
            <dt>conv_id</dt>
            <dd><code class="wrap" data-testid="detail-conv-id">${convId}</code></dd>
            <dt>session_id</dt>
            <dd><code class="wrap">${item.session_id || "—"}</code></dd>
            <dt title="the runtime of the next prompt">pointer</dt>
            <dd><${RuntimeChip} runtimeKey=${item.resolved_runtime_key} testid="detail-pointer" /></dd>
            <dt>source</dt>
            <dd><span class=${"chip chip-" + item.source}>${item.source}</span></dd>
            <dt>sockets · queue</dt>
            <dd>${item.active_sockets} · ${item.queue_depth}${item.stream_running ? " · running" : ""}</dd>
            <dt>last activity</dt>
            <dd>${fmtTime(item.last_activity_ms)}</dd>
          </dl>`
        : null}
      <h3>Runtime history</h3>
      <${RuntimeStrip} history=${history} onPickTurn=${pickTurn} />
      <h3>Turns</h3>
      ${turns.length ? html`<${TurnTable} turns=${turns} selected=${turnId} onSelect=${onSelectTurn} />` : html`<p class="muted">No turns.</p>`}
    <//>
    ${turnId && session
      ? html`<${TurnInspector} convId=${convId} sessionId=${session} turnId=${turnId} version=${turnVersion} />`
      : null}
    <${EventStream} convId=${convId} live=${item === undefined ? null : Boolean(item && item.source !== "persisted")} />
  </div>`;
}

// --- the page --------------------------------------------------------------------------------------

function TokenForm({ onSave }) {
  const [value, setValue] = useState("");
  return html`<form
    class="token-form"
    onSubmit=${(ev) => {
      ev.preventDefault();
      onSave(value.trim());
    }}
  >
    <label for="debug-token">This server's debug API needs a token</label>
    <input id="debug-token" type="password" autocomplete="off" value=${value} onInput=${(ev) => setValue(ev.currentTarget.value)} />
    <button type="submit" class="btn btn-primary">Use token</button>
    <span class="muted">Kept in this tab only (session storage).</span>
  </form>`;
}

function DebugApp() {
  const [url, setUrlState] = useState(readUrl());
  const [convs, setConvs] = useState([]);
  const [titles, setTitles] = useState({});
  const [convError, setConvError] = useState(null);
  const [authNeeded, setAuthNeeded] = useState(false);
  const [auto, setAuto] = useState(true);
  const [tick, setTick] = useState(0);

  authListener = setAuthNeeded;

  const loadConvs = useCallback(async () => {
    try {
      const body = await api("/api/debug/conversations");
      setConvs(body.items || []);
      setConvError(null);
      // Titles (first prompts) come from the chat UI's conversation list.
      const list = (await fetchJSON("/api/conversations?limit=500")).body;
      setTitles(Object.fromEntries((list.items || []).map((c) => [c.conv_id, c.title])));
    } catch (err) {
      setConvError(err);
    }
  }, []);

  useEffect(() => {
    loadConvs();
    const onPop = () => setUrlState(readUrl());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  useInterval(
    () => {
      if (document.visibilityState !== "visible") return;
      loadConvs();
      setTick((t) => t + 1);
    },
    auto ? REFRESH_MS : 0,
  );

  const go = (next, replace = false) => {
    const state = { ...url, ...next };
    if (replace) history.replaceState(state, "", location.pathname + "?" + new URLSearchParams(Object.entries(state).filter(([, v]) => v)).toString());
    else writeUrl(state);
    setUrlState(state);
  };

  const saveToken = (token) => {
    writeToken(token);
    setAuthNeeded(false);
    loadConvs();
    setTick((t) => t + 1);
  };

  return html`<div class="debug-page">
    <header class="top">
      <a class="brand" href="/debug">web-chat debug</a>
      <nav class="top-links">
        <a href="/">Chat</a>
        <a href="/help/webchat-debugging">Debugging help</a>
      </nav>
      <label class="check"
        ><input type="checkbox" checked=${auto} onChange=${(ev) => setAuto(ev.currentTarget.checked)} data-testid="auto-refresh" />
        auto-refresh</label
      >
      <button type="button" class="btn btn-small" onClick=${() => {
        loadConvs();
        setTick((t) => t + 1);
      }}>Refresh</button>
    </header>
    ${authNeeded ? html`<${TokenForm} onSave=${saveToken} />` : null}
    <div class="debug-grid">
      <div class="col-list">
        <${ConversationTable}
          items=${convs}
          titles=${titles}
          selected=${url.conv}
          error=${convError}
          onSelect=${(conv) => go({ conv, turn: "", session: "" })}
        />
      </div>
      <div class="col-detail">
        ${url.conv
          ? html`<${ConversationDetail}
              key=${url.conv}
              convId=${url.conv}
              turnId=${url.turn}
              sessionId=${url.session}
              tick=${tick}
              onSelectTurn=${(t, replace) => go({ turn: t.turn_id, session: t.session_id }, replace)}
            />`
          : html`<div class="panel placeholder"><p class="muted">Pick a conversation to see its runtime history, turns and live events.</p></div>`}
      </div>
    </div>
  </div>`;
}

render(html`<${DebugApp} />`, document.getElementById("app"));
