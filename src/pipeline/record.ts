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
}

export class LogRecord {
  readonly id: string;
  readonly timeMs: number;
  readonly input: string;
  #raw: string | undefined;
  #doc: JsonObject | undefined;
  #added: Map<string, unknown> | undefined;

  constructor(init: RecordInit) {
    this.id = init.id;
    this.timeMs = init.timeMs;
    this.input = init.input;
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
    let base: string;
    if (this.#raw !== undefined) base = this.#raw;
    else base = JSON.stringify(this.#doc);
    if (this.#added === undefined || this.#added.size === 0) return base;
    // Splice added keys before the closing brace; raw audit lines stay untouched.
    let extra = '';
    for (const [k, v] of this.#added) {
      if (v === undefined) continue;
      extra += `${JSON.stringify(k)}:${JSON.stringify(v)},`;
    }
    if (extra === '') return base;
    const close = base.lastIndexOf('}');
    const body = base.slice(0, close).trimEnd();
    const sep = body.endsWith('{') ? '' : ',';
    return `${body}${sep}${extra.slice(0, -1)}}`;
  }
}

/** A record as the spool hands it to outputs: id, time, input and its JSON line. */
export interface SpooledRecord {
  id: string;
  timeMs: number;
  input: string;
  json: string;
}
