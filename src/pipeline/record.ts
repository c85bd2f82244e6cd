/**
 * A record on its way from an input to the spool.
 *
 * The raw JSON text an input read is kept as is and parsed only when a
 * processor asks for `doc`: an audit line that no processor touches goes to
 * the spool byte for byte. Enrichment is added under top-level keys without
 * touching the original fields; `mutate()` is the one way to change them.
 */
export type JsonObject = Record<string, unknown>;

export interface RecordInit {
  /** Deterministic id, the same on every replay (audit: auditID:stage). */
  id: string;
  /** Event time, ms since epoch. */
  timeMs: number;
  /** Name of the input that read it. */
  input: string;
  /** The JSON text of the document, exactly as read. */
  raw?: string;
  /** The parsed document, when the input already has it. */
  doc?: JsonObject;
  /**
   * The input could not parse what it read and wraps it (`pass_raw`, a
   * truncated oversize line): the original text, for processors that must
   * decide whether it may leave unprocessed (redact drops it when a rule could
   * apply). `partial`: only the first bytes of the content.
   */
  unparsed?: { text: string; partial: boolean };
}

export class LogRecord {
  readonly id: string;
  readonly timeMs: number;
  readonly input: string;
  readonly unparsed: { text: string; partial: boolean } | undefined;
  #raw: string | undefined;
  #doc: JsonObject | undefined;
  #added: Map<string, unknown> | undefined;

  constructor(init: RecordInit) {
    this.id = init.id;
    this.timeMs = init.timeMs;
    this.input = init.input;
    this.unparsed = init.unparsed;
    this.#raw = init.raw;
    this.#doc = init.doc;
    if (this.#raw === undefined && this.#doc === undefined) this.#doc = {};
  }

  /** The original document, parsed on first use. Treat as read-only; see `mutate`. */
  get doc(): JsonObject {
    if (this.#doc === undefined) this.#doc = JSON.parse(this.#raw as string) as JsonObject;
    return this.#doc;
  }

  /** True when the document is still the raw text the input read. */
  get isRaw(): boolean {
    return this.#raw !== undefined;
  }

  /** The raw text while the document is unchanged (for cheap substring pre-checks); undefined after `mutate`. */
  get raw(): string | undefined {
    return this.#raw;
  }

  /** Change the document in place (redaction); the raw text is dropped. */
  mutate(fn: (doc: JsonObject) => void): void {
    const doc = this.doc;
    fn(doc);
    this.#raw = undefined;
  }

  /** Add a top-level key (enrichment) without altering the original fields. */
  add(key: string, value: unknown): void {
    (this.#added ??= new Map()).set(key, value);
  }

  added(key: string): unknown {
    return this.#added?.get(key);
  }

  /** The JSON document line as outputs will ship it (no trailing newline). */
  encode(): string {
    const added: Array<[string, unknown]> = [];
    if (this.#added) for (const [k, v] of this.#added) if (v !== undefined) added.push([k, v]);
    if (this.#raw === undefined) return JSON.stringify(added.length === 0 ? this.#doc : this.#merged(added));
    const raw = this.#raw;
    if (added.length === 0) return raw;
    // Splicing a key the document already has would write it twice, which
    // Elasticsearch rejects. The substring test is cheap and may be a false
    // alarm (a nested key, a string value): then re-encoding is merely slower.
    if (added.some(([k]) => raw.includes(JSON.stringify(k)))) return JSON.stringify(this.#merged(added));
    // Splice added keys before the closing brace; raw audit lines stay untouched.
    let extra = '';
    for (const [k, v] of added) extra += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    const close = raw.lastIndexOf('}');
    const body = raw.slice(0, close).trimEnd();
    return body.endsWith('{') ? `${body}${extra.slice(1)}}` : `${body}${extra}}`;
  }

  /** The document with the added keys; an added key replaces the original's value in place. */
  #merged(added: ReadonlyArray<[string, unknown]>): JsonObject {
    const out: JsonObject = { ...this.doc };
    for (const [k, v] of added) out[k] = v;
    return out;
  }
}

/** A record as the spool hands it to outputs: id, time, input and its JSON line. */
export interface SpooledRecord {
  id: string;
  timeMs: number;
  input: string;
  json: string;
  /** When the spool stored it (the batch's commit time, ms): the same on every resend. Set by `Spool.readBatch`. */
  storedMs?: number;
  /**
   * The same JSON line as UTF-8, when the spool read it as bytes: outputs that
   * ship the line as it is copy these instead of encoding `json` again. A view
   * into the batch read from the spool; copy what you keep.
   */
  readonly bytes?: Buffer;
}

/**
 * A spooled record read as bytes: its `json` text is decoded only if an
 * output asks for it (s3, file, a dead letter), so one that copies `bytes`
 * into its request body never builds the string.
 */
export class SpooledBytesRecord implements SpooledRecord {
  readonly id: string;
  readonly timeMs: number;
  readonly input: string;
  readonly bytes: Buffer;
  storedMs?: number;
  #json: string | undefined;

  constructor(id: string, timeMs: number, input: string, bytes: Buffer) {
    this.id = id;
    this.timeMs = timeMs;
    this.input = input;
    this.bytes = bytes;
  }

  get json(): string {
    return (this.#json ??= this.bytes.toString('utf8'));
  }
}

/** Size of a record's JSON line for request limits: its UTF-8 bytes when known, else its length in UTF-16 code units. */
export function jsonSize(r: SpooledRecord): number {
  return r.bytes !== undefined ? r.bytes.length : r.json.length;
}
