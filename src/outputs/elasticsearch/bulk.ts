import type { SpooledRecord } from '../../pipeline/record.ts';
import type { ItemFailure } from '../../plugin.ts';
import type { ByteWriter } from '../../delivery/byte-writer.ts';
import type { TimePattern } from '../../delivery/time-pattern.ts';
import { destinationCode } from '../../delivery/outcome.ts';
import { MANIFEST_INPUT } from '../../manifest/record.ts';

/**
 * The `_bulk` wire format, both ways.
 *
 * Request: for each record an action line `{"create":{"_index":..,"_id":<record id>}}`
 * and the document line. The `_id` is the record's deterministic id, so with
 * `op_type: create` a replayed record answers 409 and is counted as already
 * delivered, never indexed twice.
 *
 * Response: per-item statuses, in request order. Only failed items are
 * reported back to the delivery runner, which resends the retryable ones alone
 * and dead-letters the permanent ones.
 */

export type OpType = 'create' | 'index';

export interface BulkEncodeOptions {
  opType: OpType;
  /** Index or data stream name per record (time pattern with `{input}`). */
  target: TimePattern;
  /** Add `@timestamp` (record time, ISO 8601 UTC) to documents that lack it. */
  addTimestamp: boolean;
  /** Where manifest records go (src/manifest/): one document each, `_id` = the manifest's record id. */
  manifestIndex?: string;
}

/**
 * A manifest as a document: the manifest's JSON kept as one string field, so
 * that its many ids and hashes are stored, not mapped (docs/verify.md
 * suggests a template with `manifest` not indexed).
 */
export function manifestDocument(r: SpooledRecord): string {
  return `{"@timestamp":${JSON.stringify(new Date(r.timeMs).toISOString())},"ktrail_manifest_id":${JSON.stringify(r.id)},"manifest":${JSON.stringify(r.json)}}`;
}

const JSON_STRING_CACHE_MAX = 256;
const TIMESTAMP_KEY = Buffer.from('"@timestamp"');

/**
 * `new Date(ms).toISOString()` for runs of nearby times (audit records come
 * in time order): the text up to the second is reused while the second is
 * the same, so most records cost a few digits, not a Date.
 */
export class IsoTime {
  #second = Number.NaN;
  #prefix = '';

  format(ms: number): string {
    if (!Number.isInteger(ms)) return new Date(ms).toISOString();
    const second = Math.floor(ms / 1000);
    if (second !== this.#second) {
      const iso = new Date(second * 1000).toISOString();
      // Years beyond 9999 (or before 0) are written with a sign and six digits; the cache only knows four.
      if (iso.length !== 24) return new Date(ms).toISOString();
      this.#second = second;
      this.#prefix = iso.slice(0, 20);
    }
    const frac = ms - second * 1000;
    return `${this.#prefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
  }
}

export class BulkEncoder {
  readonly #opts: BulkEncodeOptions;
  readonly #quoted = new Map<string, string>();
  readonly #iso = new IsoTime();

  constructor(opts: BulkEncodeOptions) {
    this.#opts = opts;
  }

  /** Write the NDJSON body for `records` into `w` (which the caller has reset). */
  encode(w: ByteWriter, records: readonly SpooledRecord[]): void {
    const { opType, target, addTimestamp } = this.#opts;
    const head = `{"${opType}":{"_index":`;
    for (const r of records) {
      if (r.input === MANIFEST_INPUT && this.#opts.manifestIndex !== undefined) {
        w.write(`{"create":{"_index":${this.#quote(this.#opts.manifestIndex)},"_id":${JSON.stringify(r.id)}}}\n`);
        w.write(manifestDocument(r));
        w.byte(0x0a);
        continue;
      }
      const index = this.#quote(target.format(r.timeMs, { input: r.input }));
      w.write(`${head}${index},"_id":${JSON.stringify(r.id)}}}\n`);
      if (r.bytes !== undefined && this.#copyBytes(w, r.bytes, r.timeMs)) {
        w.byte(0x0a);
        continue;
      }
      const at = addTimestamp ? timestampInsertAt(r.json) : -1;
      if (at < 0) w.write(r.json);
      else {
        // Written in pieces: no copy of the document just to splice one key in.
        w.write(r.json.slice(0, at));
        w.write(timestampMember(r.json, at, r.timeMs));
        w.write(r.json.slice(at));
      }
      w.byte(0x0a);
    }
  }

  /**
   * The document from its spooled bytes, `@timestamp` spliced in after the
   * opening brace, without decoding it to a string. False when it needs the
   * text (it mentions `@timestamp`, or does not start with `{`): the string
   * path then decides, as it does for every other record.
   */
  #copyBytes(w: ByteWriter, bytes: Buffer, timeMs: number): boolean {
    if (!this.#opts.addTimestamp) {
      w.bytes(bytes);
      return true;
    }
    // Whitespace after the brace, or a `@timestamp` anywhere: the string path reads the document.
    if (bytes[0] !== 0x7b /* { */ || bytes.length < 2 || bytes[1]! <= 0x20 || bytes.indexOf(TIMESTAMP_KEY) !== -1) return false;
    w.byte(0x7b);
    const empty = bytes[1] === 0x7d; /* {} */
    w.write(`"@timestamp":"${this.#iso.format(timeMs)}"${empty ? '' : ','}`);
    w.bytes(bytes.subarray(1));
    return true;
  }

  #quote(name: string): string {
    let q = this.#quoted.get(name);
    if (q === undefined) {
      if (this.#quoted.size >= JSON_STRING_CACHE_MAX) this.#quoted.clear();
      q = JSON.stringify(name);
      this.#quoted.set(name, q);
    }
    return q;
  }
}

/**
 * Splice `"@timestamp":"<record time>"` in front of the document's keys unless
 * it has a top-level `@timestamp`. The record time is fixed at read time, so a
 * replay produces the same document. The substring test keeps the common case
 * (no `@timestamp` anywhere) free of a JSON parse.
 */
export function withTimestamp(json: string, timeMs: number): string {
  const at = timestampInsertAt(json);
  if (at < 0) return json;
  return `${json.slice(0, at)}${timestampMember(json, at, timeMs)}${json.slice(at)}`;
}

/** Where `"@timestamp":...` goes (just after the opening brace), or -1 when it must not be added. */
export function timestampInsertAt(json: string): number {
  let start = 0;
  while (start < json.length && json.charCodeAt(start) <= 0x20) start++;
  if (json.charCodeAt(start) !== 0x7b /* { */) return -1;
  if (json.includes('"@timestamp"')) {
    try {
      const doc = JSON.parse(json) as unknown;
      if (doc && typeof doc === 'object' && !Array.isArray(doc) && Object.hasOwn(doc, '@timestamp')) return -1;
    } catch {
      return -1; // not JSON: Elasticsearch rejects it and the item is dead-lettered with its reason
    }
  }
  return start + 1;
}

function timestampMember(json: string, at: number, timeMs: number): string {
  let next = at;
  while (next < json.length && json.charCodeAt(next) <= 0x20) next++;
  const empty = json.charCodeAt(next) === 0x7d; /* } */
  return `"@timestamp":"${new Date(timeMs).toISOString()}"${empty ? '' : ','}`;
}

export interface BulkItemsResult {
  failures: ItemFailure[];
  /** Items answered 409 on create: the document was already there (a replay). */
  duplicates: number;
}

interface BulkItemBody {
  status?: unknown;
  error?: { type?: unknown; reason?: unknown; caused_by?: { type?: unknown; reason?: unknown } } | unknown;
}

/** Response fields we read; `filter_path` keeps a big bulk answer small. */
export const BULK_FILTER_PATH = 'errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by,error.type,error.reason,status';

/**
 * Classify every item of a 200 `_bulk` answer. Throws when the answer does not
 * match the request (wrong item count, not JSON): the caller retries the
 * whole request, which is safe because every write is by `_id`.
 */
export function interpretBulkResponse(text: string, itemCount: number, opType: OpType): BulkItemsResult {
  const body = JSON.parse(text) as { errors?: unknown; items?: unknown };
  const result: BulkItemsResult = { failures: [], duplicates: 0 };
  if (body.errors === false) return result;
  const items = body.items;
  if (!Array.isArray(items) || items.length !== itemCount) {
    throw new Error(`bulk response has ${Array.isArray(items) ? items.length : 'no'} items for ${itemCount} sent`);
  }
  for (let i = 0; i < items.length; i++) {
    const wrapper = items[i] as Record<string, BulkItemBody> | undefined;
    const item = wrapper ? (wrapper[opType] ?? Object.values(wrapper)[0]) : undefined;
    const status = typeof item?.status === 'number' ? item.status : 0;
    if (status >= 200 && status < 300) continue;
    const err = (item?.error ?? {}) as { type?: unknown; reason?: unknown; caused_by?: { type?: unknown; reason?: unknown } };
    const type = typeof err.type === 'string' ? err.type : status === 0 ? 'malformed_item' : 'unknown_error';
    if (status === 409 && opType === 'create') {
      result.duplicates++;
      continue;
    }
    let reason = typeof err.reason === 'string' ? err.reason : '';
    const cause = err.caused_by;
    if (cause && typeof cause.type === 'string') reason += ` (caused by ${cause.type}: ${typeof cause.reason === 'string' ? cause.reason : ''})`;
    result.failures.push({ index: i, kind: itemFailureKind(status, type), code: destinationCode(type), detail: `${type} (HTTP ${status}): ${reason}`.slice(0, 1000) });
  }
  return result;
}

/**
 * 429, 5xx, `es_rejected_execution_exception` (a full write queue, whatever
 * the status) and 401/403 (credentials or privileges being fixed) are
 * retried; other 4xx (mapping and parsing errors) will fail the same way
 * every time and are dead-lettered.
 */
export function itemFailureKind(status: number, type: string): 'retryable' | 'permanent' {
  if (type === 'es_rejected_execution_exception' || type === 'circuit_breaking_exception') return 'retryable';
  if (status === 429 || status >= 500 || status === 0) return 'retryable';
  if (status === 401 || status === 403 || status === 408) return 'retryable';
  return 'permanent';
}
