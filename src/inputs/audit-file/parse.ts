import type { JsonObject } from '../../pipeline/record.ts';

/**
 * Turning one audit log line into what a record needs: its id
 * (`auditID:stage`, the same on every replay) and its time. The line itself is
 * shipped as read; the document is parsed only if a processor asks for it
 * (`LogRecord.doc`).
 *
 * Two ways, the same answers:
 * - The fast path (`fastAuditLine`) reads lines in the exact shape Go's
 *   encoding/json gives an `audit.k8s.io/v1` Event (fields in struct order,
 *   no whitespace) without building the document: id and time are taken by
 *   position. What it checks, so that a torn, NUL-padded or glued line is
 *   never taken for an event, is listed on the function and in
 *   docs/inputs/audit_file.md.
 * - Any other line goes through `JSON.parse`, which doubles as the validator:
 *   a line that is not JSON is never shipped as if it were.
 */

export type ParsedLine =
  | { ok: true; id: string; timeMs: number; doc?: JsonObject }
  | { ok: false; error: string };

export function parseAuditLine(line: string, fallbackTimeMs: number): ParsedLine {
  const fast = fastAuditLine(line);
  if (fast !== undefined) return { ok: true, id: fast.id, timeMs: fast.timeMs };
  return parseAuditJson(line, fallbackTimeMs);
}

/** The JSON.parse path alone (also what the fast path is tested against). */
export function parseAuditJson(line: string, fallbackTimeMs: number): ParsedLine {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch (err) {
    return { ok: false, error: `invalid JSON: ${jsonErrorText(err as Error)}` };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return { ok: false, error: 'not a JSON object' };
  }
  const o = doc as JsonObject;
  const auditID = o.auditID;
  const stage = o.stage;
  if (typeof auditID !== 'string' || auditID === '') return { ok: false, error: 'no auditID' };
  if (typeof stage !== 'string' || stage === '') return { ok: false, error: 'no stage' };
  return { ok: true, id: `${auditID}:${stage}`, timeMs: eventTimeMs(o, fallbackTimeMs), doc: o };
}

/** stageTimestamp, else requestReceivedTimestamp (RFC 3339, micro-second precision), else the fallback. */
export function eventTimeMs(o: JsonObject, fallbackTimeMs: number): number {
  for (const key of ['stageTimestamp', 'requestReceivedTimestamp']) {
    const v = o[key];
    if (typeof v === 'string') {
      const t = Date.parse(v);
      if (Number.isFinite(t)) return t;
    }
  }
  return fallbackTimeMs;
}

// The shape kube-apiserver writes (k8s.io/apiserver audit.Event marshalled by encoding/json).
const PLAIN = '[^"\\\\\\x00-\\x1f]';
// Unrolled (runs of plain characters between escapes) so that a long string costs no backtracking stack.
const JSON_STRING = `"${PLAIN}*(?:\\\\(?:["\\\\/bfnrt]|u[0-9a-fA-F]{4})${PLAIN}*)*"`;
const EVENT_HEAD_RE = new RegExp(
  `^\\{"kind":"Event","apiVersion":"audit\\.k8s\\.io/v1","level":"${PLAIN}{1,32}","auditID":"(${PLAIN}{1,128})","stage":"(${PLAIN}{1,64})","requestURI":"`,
);
const RECEIVED_KEY = ',"requestReceivedTimestamp":"';
const EVENT_TAIL_RE = new RegExp(
  `${RECEIVED_KEY}${PLAIN}{1,64}","stageTimestamp":"(${PLAIN}{1,64})"(?:,"annotations":\\{(?:${JSON_STRING}:${JSON_STRING}(?:,${JSON_STRING}:${JSON_STRING})*)?\\})?\\}$`,
  'y',
);
/** The start of an audit event anywhere but at offset 0 means two lines glued together (a torn write). */
const ANOTHER_EVENT = '{"kind":"Event","apiVersion":"audit.k8s.io/';
/** The tail is looked for this near the end first (a forward search is cheaper than lastIndexOf). */
const TAIL_WINDOW = 4096;

function matchTail(s: string, at: number): RegExpExecArray | null {
  EVENT_TAIL_RE.lastIndex = at;
  try {
    return EVENT_TAIL_RE.exec(s);
  } catch {
    // Backtracking stack exhausted (annotations with a great many escapes): JSON.parse decides.
    return null;
  }
}

/**
 * id and time of a line in the exact shape kube-apiserver writes, without
 * JSON.parse; undefined for any other line (the caller falls back to
 * JSON.parse, so undefined never rejects a line). Accepted only if:
 * 1. the line starts with `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"<L>","auditID":"<ID>","stage":"<S>","requestURI":"`,
 *    where L, ID and S are non-empty strings without escapes or control characters;
 * 2. it ends with `,"requestReceivedTimestamp":"<T1>","stageTimestamp":"<T2>"}`
 *    or `…"<T2>","annotations":{<"key":"value" pairs>}}` (T1, T2 plain strings,
 *    every string of the annotations checked as JSON, escapes included), the
 *    last `}` being the last byte: a torn line lacks this end;
 * 3. it holds no NUL (zero-filled blocks after a crash);
 * 4. `{"kind":"Event","apiVersion":"audit.k8s.io/` occurs only at offset 0
 *    (a torn line followed by the next event, with no newline between);
 * 5. T2 parses as a date (it is the record's time).
 * The bytes between `"requestURI":"` and the tail are not looked at.
 */
export function fastAuditLine(s: string): { id: string; timeMs: number } | undefined {
  const head = EVENT_HEAD_RE.exec(s);
  if (head === null) return undefined;
  const headEnd = head[0].length;
  let received = s.indexOf(RECEIVED_KEY, Math.max(headEnd, s.length - TAIL_WINDOW));
  if (received < 0) received = s.lastIndexOf(RECEIVED_KEY);
  if (received < headEnd) return undefined;
  let tail = matchTail(s, received);
  if (tail === null) {
    // The forward search may have stopped at a nested key; only the last one can start the tail.
    const last = s.lastIndexOf(RECEIVED_KEY);
    if (last === received) return undefined;
    tail = matchTail(s, last);
    if (tail === null) return undefined;
  }
  if (s.indexOf('\0') !== -1 || s.indexOf(ANOTHER_EVENT, 1) !== -1) return undefined;
  const timeMs = Date.parse(tail[1]!);
  if (!Number.isFinite(timeMs)) return undefined;
  return { id: `${head[1]}:${head[2]}`, timeMs };
}

const AUDIT_ID_RE = /"auditID"\s*:\s*"([^"\\]{1,128})"/;
const STAGE_RE = /"stage"\s*:\s*"([^"\\]{1,64})"/;
const STAGE_TS_RE = /"stageTimestamp"\s*:\s*"([^"\\]{1,64})"/;
const RECEIVED_TS_RE = /"requestReceivedTimestamp"\s*:\s*"([^"\\]{1,64})"/;

/**
 * Best-effort id and time of a line too large to parse, from its first and
 * last bytes: kube-apiserver writes auditID and stage near the start and the
 * timestamps after the (large) request/response objects, near the end.
 */
export function sniffOversize(head: string, tail: string): { id?: string; timeMs?: number } {
  const auditID = AUDIT_ID_RE.exec(head)?.[1];
  const stage = STAGE_RE.exec(head)?.[1];
  const ts = STAGE_TS_RE.exec(tail)?.[1] ?? RECEIVED_TS_RE.exec(tail)?.[1] ?? RECEIVED_TS_RE.exec(head)?.[1];
  const t = ts !== undefined ? Date.parse(ts) : Number.NaN;
  return {
    id: auditID !== undefined && stage !== undefined ? `${auditID}:${stage}` : undefined,
    timeMs: Number.isFinite(t) ? t : undefined,
  };
}

/** True for a line with nothing but whitespace (skipped, not an error). */
export function isBlank(line: string): boolean {
  if (line.length === 0) return true;
  const c = line.charCodeAt(0);
  if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  return line.trim() === '';
}

/**
 * V8's JSON.parse message without the excerpt of the input it may quote
 * (`Unexpected token 'h', "hunter2 is…" is not valid JSON`): the reason of a
 * dead letter is logged and printed, and must never carry the content.
 */
export function jsonErrorText(err: Error): string {
  const m = err.message;
  const quoted = m.indexOf(', "');
  const text = quoted >= 0 ? `${m.slice(0, quoted)} (not valid JSON)` : m;
  // The offending character is printed as-is; anything not plain ASCII is shown as its code.
  return text.replace(/'([^']*)'/, (_, c: string) => (/^[\x20-\x7e]$/.test(c) ? `'${c}'` : `U+${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`));
}
