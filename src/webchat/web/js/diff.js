// Block-level diff between two phase snapshots of a turn, and a path-level diff of their metadata.

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value === undefined ? null : value);
}

export function sameValue(a, b) {
  return canonical(a) === canonical(b);
}

const BLOCK_FIELDS = ["kind", "role", "payload", "metadata"];

function blockKey(block, index) {
  return block && block.id ? `id:${block.id}` : `at:${index}`;
}

// Longest common subsequence of two key lists (turns are small: a quadratic table is fine).
function lcs(a, b) {
  const n = a.length;
  const m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const pairs = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      pairs.push([i, j]);
      i++;
      j++;
    } else if (table[i + 1][j] >= table[i][j + 1]) {
      i++;
    } else {
      j++;
    }
  }
  return pairs;
}

// Entries `{status: added|removed|changed|unchanged|moved, key, before, after, fields}` in reading order.
export function diffBlocks(fromBlocks, toBlocks) {
  const a = fromBlocks || [];
  const b = toBlocks || [];
  const aKeys = a.map(blockKey);
  const bKeys = b.map(blockKey);
  const aIndex = new Map(aKeys.map((k, i) => [k, i]));
  const bSet = new Set(bKeys);
  const pairs = lcs(aKeys, bKeys);
  const entries = [];
  const compare = (before, after, key, moved) => {
    const fields = BLOCK_FIELDS.filter((f) => !sameValue(before[f] ?? (f === "role" ? "" : {}), after[f] ?? (f === "role" ? "" : {})));
    const status = moved ? "moved" : fields.length ? "changed" : "unchanged";
    entries.push({ status, key, before, after, fields });
  };
  let i = 0;
  let j = 0;
  const flushUntil = (pi, pj) => {
    while (i < pi) {
      // Only blocks that are gone from the later phase are "removed"; a block that moved is shown
      // once, where it is now.
      if (!bSet.has(aKeys[i])) entries.push({ status: "removed", key: aKeys[i], before: a[i], after: null, fields: [] });
      i++;
    }
    while (j < pj) {
      const k = bKeys[j];
      if (aIndex.has(k)) compare(a[aIndex.get(k)], b[j], k, true);
      else entries.push({ status: "added", key: k, before: null, after: b[j], fields: [] });
      j++;
    }
  };
  for (const [pi, pj] of pairs) {
    flushUntil(pi, pj);
    compare(a[pi], b[pj], aKeys[pi], false);
    i = pi + 1;
    j = pj + 1;
  }
  flushUntil(a.length, b.length);
  return entries;
}

function flatten(value, prefix, out) {
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const key of Object.keys(value)) flatten(value[key], prefix ? `${prefix}.${key}` : key, out);
  } else if (prefix) {
    out.set(prefix, value);
  }
  return out;
}

// Changes between two objects by dotted path: `[{path, status: added|removed|changed, before, after}]`.
export function diffObjects(before, after) {
  const a = flatten(before || {}, "", new Map());
  const b = flatten(after || {}, "", new Map());
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  const changes = [];
  for (const path of paths) {
    if (!a.has(path)) changes.push({ path, status: "added", before: undefined, after: b.get(path) });
    else if (!b.has(path)) changes.push({ path, status: "removed", before: a.get(path), after: undefined });
    else if (!sameValue(a.get(path), b.get(path))) {
      changes.push({ path, status: "changed", before: a.get(path), after: b.get(path) });
    }
  }
  return changes;
}

export function summarize(entries) {
  const counts = { added: 0, removed: 0, changed: 0, moved: 0, unchanged: 0 };
  for (const e of entries) counts[e.status] += 1;
  return counts;
}
