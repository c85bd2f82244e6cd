import type { JsonObject } from '../../pipeline/record.ts';

/**
 * Turning one audit log line into what a record needs: its id
 * (`auditID:stage`, the same on every replay), its time and the parsed
 * document. `JSON.parse` doubles as the validator: a line that is not JSON is
 * never shipped as if it were.
 */

export type ParsedLine =
  | { ok: true; id: string; timeMs: number; doc: JsonObject }
  | { ok: false; error: string };

export function parseAuditLine(line: string, fallbackTimeMs: number): ParsedLine {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch (err) {
    return { ok: false, error: `invalid JSON: ${(err as Error).message}` };
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
