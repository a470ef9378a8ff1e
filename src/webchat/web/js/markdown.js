// A small, safe Markdown renderer for chat messages.
//
// Safety first: the whole source is HTML-escaped BEFORE any Markdown is recognised, so no character of
// the input can ever form a tag or an attribute; the only markup in the output is the markup this file
// emits. Link targets are checked against an allow-list of schemes (http, https, mailto and relative
// URLs); anything else (javascript:, data:, vbscript:…) is rendered as plain text.
//
// Supported: fenced code blocks (``` or ~~~, with a language and a copy button; an unclosed fence while
// a message is still streaming renders as code up to the end), ATX headings, paragraphs with line
// breaks, block quotes, ordered and unordered lists (nested by indentation), horizontal rules, GFM
// tables, and inline code, links, autolinks, **bold**, *italic* and ~~strikethrough~~.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function unescapeHtml(text) {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");
}

// `url` is escaped text; true when its unescaped form is an allowed link target.
export function isSafeUrl(url) {
  const raw = unescapeHtml(url).trim();
  if (!raw || /[\u0000-\u001f\u007f\s]/.test(raw)) return false;
  if (/^(https?:|mailto:)/i.test(raw)) return true;
  // Relative: no scheme before the first "/", "?" or "#".
  const colon = raw.indexOf(":");
  if (colon === -1) return true;
  const firstSep = raw.search(/[/?#]/);
  return firstSep !== -1 && firstSep < colon;
}

// --- inline ----------------------------------------------------------------------------------------

// Stash generated markup behind placeholders so that later inline rules never look inside it.
class Stash {
  constructor() {
    this.items = [];
  }
  put(html) {
    this.items.push(html);
    return `\u0000${this.items.length - 1}\u0000`;
  }
  restore(text) {
    // Placeholders can nest (a link whose text holds code), so restore until none is left.
    let out = text;
    for (let i = 0; i < 5 && out.includes("\u0000"); i++) {
      out = out.replace(/\u0000(\d+)\u0000/g, (_, n) => this.items[Number(n)] ?? "");
    }
    return out;
  }
}

function link(href, label) {
  return `<a href="${href}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
}

// `text` is already escaped.
export function renderInline(text, stash = new Stash()) {
  let out = text;
  // Code spans: their content is taken literally.
  out = out.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, _ticks, code) => {
    const trimmed = /^ [\s\S]* $/.test(code) && code.trim() ? code.slice(1, -1) : code;
    return stash.put(`<code>${trimmed}</code>`);
  });
  // [label](url "title")
  out = out.replace(/\[([^\]\n]+)\]\(\s*([^\s()]+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)/g, (whole, label, url) => {
    if (!isSafeUrl(url)) return whole;
    return stash.put(link(url, emphasis(label)));
  });
  // Bare URLs (trailing punctuation is not part of them).
  out = out.replace(/\bhttps?:\/\/[^\s<>\u0000]+/g, (url) => {
    const m = /^(.*?)((?:[.,;:!?)\]]|&quot;|&#39;|&gt;)*)$/.exec(url);
    const href = m ? m[1] : url;
    const tail = m ? m[2] : "";
    if (!href || !isSafeUrl(href)) return url;
    return stash.put(link(href, href)) + tail;
  });
  out = emphasis(out);
  return stash.restore(out);
}

// --- blocks ----------------------------------------------------------------------------------------

const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}&gt; ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
const TABLE_SEP = /^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$/;

function indentOf(line) {
  return line.length - line.replace(/^ +/, "").length;
}

function isBlank(line) {
  return !line.trim();
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || HR.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function codeBlock(lang, lines) {
  const safeLang = lang.replace(/[^\w+#.-]/g, "");
  const cls = safeLang ? ` class="language-${safeLang}"` : "";
  const label = safeLang ? `<span class="code-lang">${safeLang}</span>` : `<span class="code-lang">code</span>`;
  return (
    `<div class="code-block"><div class="code-head">${label}` +
    `<button type="button" class="copy-code" aria-label="Copy code">Copy</button></div>` +
    `<pre><code${cls}>${lines.join("\n")}</code></pre></div>`
  );
}

function renderList(lines, start) {
  const first = LIST_ITEM.exec(lines[start]);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items = [];
  let i = start;
  while (i < lines.length) {
    const m = LIST_ITEM.exec(lines[i]);
    if (!m || m[1].length !== baseIndent || /\d/.test(m[2]) !== ordered) break;
    const body = [m[3]];
    const contentIndent = m[1].length + m[2].length + 1;
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        // A blank line continues the item only when the next line is indented into it.
        if (i + 1 < lines.length && indentOf(lines[i + 1]) > baseIndent && !isBlank(lines[i + 1])) {
          body.push("");
          i++;
          continue;
        }
        break;
      }
      const indent = indentOf(line);
      if (indent > baseIndent) {
        body.push(line.slice(Math.min(indent, contentIndent)));
        i++;
        continue;
      }
      // An unindented line ends the list (chat answers rarely hard-wrap list items).
      break;
    }
    items.push(body);
  }
  const startAttr = ordered && parseInt(first[2], 10) !== 1 ? ` start="${parseInt(first[2], 10)}"` : "";
  const tag = ordered ? "ol" : "ul";
  const html = items
    .map((body) => {
      const simple = body.every((l) => !isBlank(l) && !startsBlock(l));
      let inner = simple ? renderInline(body.join("\n")).replace(/\n/g, "<br>") : renderBlocks(body);
      // A tight item (no blank line) keeps its first paragraph inline, before a nested list.
      if (!simple && !body.some(isBlank)) inner = inner.replace(/^<p>([\s\S]*?)<\/p>/, "$1");
      return `<li>${inner}</li>`;
    })
    .join("");
  return { html: `<${tag}${startAttr}>${html}</${tag}>`, next: i };
}

function renderTable(lines, start) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    return left && right ? "center" : right ? "right" : left ? "left" : "";
  });
  let i = start + 2;
  const rows = [];
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
    rows.push(splitRow(lines[i]));
    i++;
  }
  const cell = (tag, text, col) => {
    const align = aligns[col] ? ` class="align-${aligns[col]}"` : "";
    return `<${tag}${align}>${renderInline(text ?? "")}</${tag}>`;
  };
  const head = `<tr>${header.map((h, c) => cell("th", h, c)).join("")}</tr>`;
  const body = rows.map((r) => `<tr>${header.map((_, c) => cell("td", r[c], c)).join("")}</tr>`).join("");
  return {
    html: `<div class="table-wrap"><table><thead>${head}</thead><tbody>${body}</tbody></table></div>`,
    next: i,
  };
}

// `lines` are escaped.
function renderBlocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const body = [];
      i++;
      while (i < lines.length) {
        const close = lines[i].trim();
        if (close.startsWith(marker[0].repeat(marker.length)) && /^(`+|~+)$/.test(close)) break;
        body.push(lines[i]);
        i++;
      }
      i++; // the closing fence (or the end of an unclosed, still streaming block)
      out.push(codeBlock(fence[2], body));
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${renderInline(heading[2] || "")}</h${level}>`);
      i++;
      continue;
    }
    if (HR.test(line)) {
      out.push("<hr>");
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const m = QUOTE.exec(lines[i]);
        body.push(m ? m[1] : lines[i]);
        i++;
      }
      out.push(`<blockquote>${renderBlocks(body)}</blockquote>`);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const list = renderList(lines, i);
      out.push(list.html);
      i = list.next;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const table = renderTable(lines, i);
      out.push(table.html);
      i = table.next;
      continue;
    }
    const para = [];
    while (i < lines.length && !isBlank(lines[i]) && (para.length === 0 || !startsBlock(lines[i]))) {
      para.push(lines[i].trim());
      i++;
    }
    out.push(`<p>${renderInline(para.join("\n")).replace(/\n/g, "<br>")}</p>`);
  }
  return out.join("");
}

// Markdown source → HTML (a string to be used as innerHTML: it is safe by construction).
export function renderMarkdown(source) {
  const text = String(source ?? "")
    .replace(/\r\n?/g, "\n")
    .replace(/\u0000/g, "\ufffd")
    .replace(/\t/g, "    ");
  return renderBlocks(escapeHtml(text).split("\n"));
}
