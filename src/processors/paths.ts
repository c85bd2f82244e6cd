/**
 * Field paths into JSON documents, shared by the filter, redact and
 * k8s_metadata processors.
 *
 * Syntax (documented in docs/processors/filter.md):
 *   verb                         a top-level key
 *   objectRef.resource           nested keys, separated by dots
 *   user.extra["a.b/c"]          a key that contains dots or other special
 *                                characters, in double or single quotes
 *                                (backslash escapes the quote and itself)
 *   items[0]                     one array element
 *   items[].metadata             every element of an array (also `items[*]`)
 *   metadata.annotations.*       every value of an object or array
 *   **.metadata.annotations      any depth, including none (the root itself)
 *
 * Paths never step into arrays implicitly: `items.metadata` finds nothing
 * when `items` is an array — write `items[].metadata`. Only the final value
 * is flattened for comparisons (see condition.ts), so `user.groups` with
 * `equals: system:masters` matches when any group is `system:masters`.
 *
 * Matching is iterative (an explicit stack), so a deeply nested document
 * cannot overflow the call stack.
 */

export type PathSegment =
  | { kind: 'key'; key: string }
  | { kind: 'index'; index: number }
  /** `*`, `[]`, `[*]`: every value of an object, every element of an array. */
  | { kind: 'any' }
  /** `**`: this node and every object/array below it. */
  | { kind: 'deep' };

export interface FieldPath {
  readonly source: string;
  readonly segments: readonly PathSegment[];
}

export class PathSyntaxError extends Error {
  readonly position: number;
  constructor(source: string, position: number, problem: string) {
    super(`invalid path ${JSON.stringify(source)} at character ${position + 1}: ${problem}`);
    this.name = 'PathSyntaxError';
    this.position = position;
  }
}

const BARE_STOP = new Set(['.', '[', ']', '"', "'"]);

export function parsePath(source: string): FieldPath {
  const segments: PathSegment[] = [];
  let i = 0;
  const n = source.length;
  if (n === 0) throw new PathSyntaxError(source, 0, 'the path is empty');
  // `expectKey` is true at the start and after a dot: a bare key or `*`/`**` must follow.
  let expectKey = true;
  while (i < n) {
    const c = source[i]!;
    if (c === '[') {
      const close = readBracket(source, i, segments);
      i = close + 1;
      expectKey = false;
      continue;
    }
    if (c === '.') {
      if (expectKey) throw new PathSyntaxError(source, i, 'empty key (two dots, or a dot at the start)');
      expectKey = true;
      i++;
      if (i === n) throw new PathSyntaxError(source, i - 1, 'the path ends with a dot');
      continue;
    }
    if (!expectKey) throw new PathSyntaxError(source, i, 'expected "." or "[" after a key');
    let j = i;
    while (j < n && !BARE_STOP.has(source[j]!)) j++;
    if (j === i) throw new PathSyntaxError(source, i, `unexpected ${JSON.stringify(c)}; quote keys with special characters: ["key"]`);
    const word = source.slice(i, j);
    if (/\s/.test(word)) throw new PathSyntaxError(source, i, 'spaces are not allowed in a bare key; quote it: ["my key"]');
    if (word === '*') segments.push({ kind: 'any' });
    else if (word === '**') segments.push({ kind: 'deep' });
    else segments.push({ kind: 'key', key: word });
    i = j;
    expectKey = false;
  }
  if (segments.at(-1)?.kind === 'deep') throw new PathSyntaxError(source, n - 1, '"**" cannot be the last segment');
  return { source, segments };
}

/** Reads `[...]` starting at `open`; returns the index of the closing bracket. */
function readBracket(source: string, open: number, out: PathSegment[]): number {
  const n = source.length;
  let i = open + 1;
  const q = source[i];
  if (q === '"' || q === "'") {
    let key = '';
    i++;
    for (;;) {
      if (i >= n) throw new PathSyntaxError(source, open, 'unterminated quoted key');
      const c = source[i]!;
      if (c === '\\') {
        const next = source[i + 1];
        if (next === undefined) throw new PathSyntaxError(source, i, 'dangling backslash');
        key += next;
        i += 2;
        continue;
      }
      if (c === q) break;
      key += c;
      i++;
    }
    i++;
    if (source[i] !== ']') throw new PathSyntaxError(source, i, 'expected "]" after the quoted key');
    out.push({ kind: 'key', key });
    return i;
  }
  const close = source.indexOf(']', i);
  if (close < 0) throw new PathSyntaxError(source, open, 'unterminated "["');
  const inner = source.slice(i, close);
  if (inner === '' || inner === '*') out.push({ kind: 'any' });
  else if (/^\d+$/.test(inner)) out.push({ kind: 'index', index: Number(inner) });
  else throw new PathSyntaxError(source, i, `expected a quoted key, an index, "*" or nothing inside [], got ${JSON.stringify(inner)}`);
  return close;
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === 'object' && v !== null;
}

/**
 * Calls `visit(parent, key)` for every existing location the path names.
 * `parent` is the object or array holding the value; `key` is its key or index.
 */
export function visitPath(root: unknown, path: FieldPath, visit: (parent: Record<string, unknown> | unknown[], key: string | number) => void): void {
  const segs = path.segments;
  const last = segs.length - 1;
  const stack: Array<{ node: unknown; seg: number }> = [{ node: root, seg: 0 }];
  while (stack.length > 0) {
    const { node, seg } = stack.pop()!;
    if (!isContainer(node)) continue;
    const s = segs[seg]!;
    if (s.kind === 'deep') {
      // Zero levels: the rest of the path applies here; more levels: every child container.
      stack.push({ node, seg: seg + 1 });
      if (Array.isArray(node)) {
        for (const child of node) if (isContainer(child)) stack.push({ node: child, seg });
      } else {
        for (const k in node) {
          const child = node[k];
          if (isContainer(child)) stack.push({ node: child, seg });
        }
      }
      continue;
    }
    const step = (key: string | number, child: unknown) => {
      if (seg === last) visit(node, key);
      else if (isContainer(child)) stack.push({ node: child, seg: seg + 1 });
    };
    if (s.kind === 'key') {
      if (Array.isArray(node)) continue;
      if (Object.hasOwn(node, s.key)) step(s.key, node[s.key]);
    } else if (s.kind === 'index') {
      if (Array.isArray(node) && s.index < node.length) step(s.index, node[s.index]);
    } else if (Array.isArray(node)) {
      for (let k = 0; k < node.length; k++) step(k, node[k]);
    } else {
      for (const k in node) step(k, node[k]);
    }
  }
}

/** Every value the path names (empty when nothing is there). */
export function pathValues(root: unknown, path: FieldPath): unknown[] {
  // The common case — plain keys — without the general machinery.
  if (path.segments.every((s) => s.kind === 'key')) {
    let cur: unknown = root;
    for (const s of path.segments) {
      if (!isContainer(cur) || Array.isArray(cur)) return [];
      const key = (s as { key: string }).key;
      if (!Object.hasOwn(cur, key)) return [];
      cur = cur[key];
    }
    return [cur];
  }
  const out: unknown[] = [];
  visitPath(root, path, (parent, key) => out.push((parent as Record<string | number, unknown>)[key]));
  return out;
}

/** The value at a path of plain keys, or undefined. */
export function getPath(root: unknown, path: FieldPath): unknown {
  return pathValues(root, path)[0];
}

// --- Raw-text pre-checks -----------------------------------------------------

/**
 * Characters no JSON encoder escapes (Go escapes `<>&` and U+2028/9, others
 * escape `/`, `'`, `+` or anything non-ASCII). A run of these characters
 * appears verbatim in the raw text whenever the string it comes from does.
 */
const SAFE_RUN = /[A-Za-z0-9 _.:@,;!#$%()*?^{|}~-]+/g;
const ALL_SAFE = /^[A-Za-z0-9 _.:@,;!#$%()*?^{|}~-]*$/;

/** Shortest needle worth a substring search; shorter ones prove little. */
const MIN_NEEDLE = 3;

/**
 * A substring that must appear in the raw JSON text of any document where
 * `text` occurs as a complete string (`quoted`: with its quotes, for exact
 * values and keys) or as the start of one (`prefix`). Undefined when no
 * reliable needle exists.
 */
export function textNeedle(text: string, mode: 'quoted' | 'prefix' | 'inner'): string | undefined {
  if (ALL_SAFE.test(text)) {
    if (mode === 'quoted') return `"${text}"`;
    if (mode === 'prefix') return `"${text}`;
    return text.length >= MIN_NEEDLE ? text : undefined;
  }
  let best = '';
  for (const m of text.matchAll(SAFE_RUN)) if (m[0].length > best.length) best = m[0];
  return best.length >= MIN_NEEDLE ? best : undefined;
}

/** The best needle for a path: its longest literal key. Undefined when it has none worth searching. */
export function pathNeedle(path: FieldPath): string | undefined {
  let best: string | undefined;
  for (const s of path.segments) {
    if (s.kind !== 'key') continue;
    const n = textNeedle(s.key, 'quoted');
    if (n !== undefined && (best === undefined || n.length > best.length)) best = n;
  }
  return best;
}

/**
 * One regular expression that matches when any of the needles occurs: a
 * single pass over a line instead of one `includes` per needle (several
 * times faster for the handful of needles a rule set has).
 */
export function anyNeedle(needles: readonly string[]): RegExp {
  const unique = [...new Set(needles)].sort((a, b) => b.length - a.length);
  if (unique.length === 0) return /(?!)/;
  return new RegExp(unique.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));
}
