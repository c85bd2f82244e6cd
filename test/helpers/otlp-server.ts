import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';
import type protobuf from 'protobufjs';
import { otlpTypes } from '../../src/outputs/otlp-http/proto.ts';

/**
 * An OTLP/HTTP logs receiver on 127.0.0.1 that decodes what it gets with the
 * official proto definitions (the vendored opentelemetry-proto files, through
 * protobuf.js): `application/x-protobuf` bodies with the binary decoder, and
 * `application/json` bodies checked field by field against the same
 * definitions under the OTLP/JSON rules — lowerCamelCase names only, enums as
 * integers, 64-bit integers as decimal strings (a number is accepted, but
 * counted in `jsonNumberLongs`), hex for trace/span ids — then read with
 * protobuf.js's proto3 JSON reader. Either way the request lands as the same
 * decoded message. gzip request bodies are accepted.
 *
 * Answers: 200 with an ExportLogsServiceResponse in the request's content
 * type; test knobs in `next` script partial successes (the first records are
 * kept, the rest rejected), 429/503 with Retry-After, 400 with a
 * google.rpc.Status message, and delays (the records are stored before the
 * delay: "stored, answer lost" is a real case).
 */
export interface Reply {
  status?: number;
  retryAfter?: string;
  /** 200 with partial_success: this many of the request's records rejected (the last ones). */
  reject?: number;
  message?: string;
  delayMs?: number;
  /** A body that is not OTLP (with this content type). */
  raw?: { contentType: string; body: string };
}

export interface DecodedLog {
  resource: Record<string, unknown>;
  scope: { name?: string; version?: string };
  record: DecodedRecord;
  encoding: 'protobuf' | 'json';
}

export interface DecodedRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber?: number;
  severityText?: string;
  eventName?: string;
  /** The body as a plain value (kvlist → object, arrayValue → array, intValue → number). */
  body: unknown;
  attributes: Record<string, unknown>;
}

export interface ReceivedRequest {
  headers: http.IncomingHttpHeaders;
  path: string;
  encoding: 'protobuf' | 'json';
  /** The JSON text as sent, for json requests. */
  jsonText?: string;
  records: number;
  status: number;
}

interface Pb {
  key?: string;
  value?: PbAny;
}
interface PbAny {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: PbAny[] };
  kvlistValue?: { values?: Pb[] };
  bytesValue?: string;
}

/** An AnyValue as a plain JS value. */
export function plain(v: PbAny | undefined): unknown {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(plain);
  if (v.kvlistValue !== undefined) return attrs(v.kvlistValue.values);
  return null;
}

function attrs(kvs: Pb[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) {
    if (kv.key === undefined) continue;
    if (kv.key in out) throw new Error(`duplicate attribute key ${kv.key}`);
    out[kv.key] = plain(kv.value);
  }
  return out;
}

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

/** Check a parsed OTLP/JSON value against a message type; throws on what the OTLP/JSON rules forbid. */
function checkJson(type: protobuf.Type, v: unknown, at: string, counts: { numberLongs: number }): void {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${at}: expected an object for ${type.fullName}`);
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const field = type.fields[k];
    // protobuf.js names fields in lowerCamelCase (the JSON names); snake_case is not valid OTLP/JSON.
    if (field === undefined) {
      if (k.includes('_')) throw new Error(`${at}.${k}: not a lowerCamelCase field name`);
      continue; // unknown fields are ignored, as receivers must
    }
    if (field.repeated && !Array.isArray(x)) throw new Error(`${at}.${k}: expected an array`);
    const values = field.repeated ? (x as unknown[]) : [x];
    for (const [i, one] of values.entries()) {
      const here = field.repeated ? `${at}.${k}[${i}]` : `${at}.${k}`;
      const rt = field.resolve().resolvedType;
      if (rt && 'fields' in rt) checkJson(rt as protobuf.Type, one, here, counts);
      else if (rt) {
        if (typeof one !== 'number') throw new Error(`${here}: enums must be integers in OTLP/JSON, got ${JSON.stringify(one)}`);
      } else if (LONG_TYPES.has(field.type)) {
        if (typeof one === 'number') counts.numberLongs++;
        else if (typeof one !== 'string' || !/^-?\d+$/.test(one)) throw new Error(`${here}: 64-bit integer must be a decimal string, got ${JSON.stringify(one)}`);
      } else if (field.type === 'bytes') {
        if (typeof one !== 'string' || ((k === 'traceId' || k === 'spanId') && !/^[0-9a-fA-F]*$/.test(one))) throw new Error(`${here}: bad bytes`);
      } else if (field.type === 'string' && typeof one !== 'string') throw new Error(`${here}: expected a string`);
      else if (field.type === 'bool' && typeof one !== 'boolean') throw new Error(`${here}: expected a boolean`);
    }
  }
}

export class FakeOtlpReceiver {
  /** Log records accepted (partial successes keep only the accepted ones). */
  readonly logs: DecodedLog[] = [];
  /** Log records the receiver rejected by partial success. */
  readonly rejected: DecodedLog[] = [];
  readonly requests: ReceivedRequest[] = [];
  /** Replies for the next requests, in order; then 200. */
  readonly next: Reply[] = [];
  /** Answer every request this way (after `next` is used up). */
  always: Reply | undefined;
  /** Requests with more log records than this are refused with 413. */
  maxRecords = Infinity;
  /** Required `name: value` header; 401 without it. */
  requireHeader: [string, string] | undefined;
  /** Quote the request's headers in error messages (a careless receiver: secrets must still not leak from ktrail). */
  echoHeaders = false;
  jsonNumberLongs = 0;
  errors: string[] = [];
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();

  constructor() {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  /** Decode a request body with the official definitions; throws when it is not a valid ExportLogsServiceRequest. */
  decode(body: Buffer, contentType: string): { logs: DecodedLog[]; encoding: 'protobuf' | 'json'; jsonText?: string } {
    const { request } = otlpTypes();
    let message: protobuf.Message;
    let encoding: 'protobuf' | 'json';
    let jsonText: string | undefined;
    if (contentType === 'application/x-protobuf') {
      encoding = 'protobuf';
      message = request.decode(body);
    } else if (contentType === 'application/json') {
      encoding = 'json';
      jsonText = body.toString('utf8');
      const j = JSON.parse(jsonText) as unknown;
      const counts = { numberLongs: 0 };
      checkJson(request, j, '$', counts);
      this.jsonNumberLongs += counts.numberLongs;
      message = request.fromObject(j as Record<string, unknown>);
    } else {
      throw new Error(`unsupported content-type ${contentType}`);
    }
    const o = request.toObject(message, { longs: String, enums: Number }) as {
      resourceLogs?: Array<{ resource?: { attributes?: Pb[] }; scopeLogs?: Array<{ scope?: { name?: string; version?: string }; logRecords?: Array<Record<string, unknown>> }> }>;
    };
    const logs: DecodedLog[] = [];
    for (const rl of o.resourceLogs ?? []) {
      const resource = attrs(rl.resource?.attributes);
      for (const sl of rl.scopeLogs ?? []) {
        for (const lr of sl.logRecords ?? []) {
          const record: DecodedRecord = {
            timeUnixNano: String(lr.timeUnixNano ?? '0'),
            observedTimeUnixNano: String(lr.observedTimeUnixNano ?? '0'),
            body: plain(lr.body as PbAny | undefined),
            attributes: attrs(lr.attributes as Pb[] | undefined),
          };
          if (lr.severityNumber !== undefined) record.severityNumber = lr.severityNumber as number;
          if (lr.severityText !== undefined) record.severityText = lr.severityText as string;
          if (lr.eventName !== undefined) record.eventName = lr.eventName as string;
          logs.push({ resource, scope: sl.scope ?? {}, record, encoding });
        }
      }
    }
    return jsonText === undefined ? { logs, encoding } : { logs, encoding, jsonText };
  }

  /** Record ids of the accepted log records, in arrival order (repeats included). */
  ids(): string[] {
    return this.logs.map((l) => String(l.record.attributes['ktrail.record.id']));
  }

  #answer(res: http.ServerResponse, status: number, contentType: string, message: object, headers: Record<string, string> = {}): void {
    const { response, status: statusType } = otlpTypes();
    const type = status === 200 ? response : statusType;
    const body = contentType === 'application/json' ? Buffer.from(JSON.stringify(message)) : Buffer.from(type.encode(type.fromObject(message)).finish());
    res.writeHead(status, { 'content-type': contentType, ...headers });
    res.end(body);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body = Buffer.concat(chunks);
    const contentType = String(req.headers['content-type'] ?? '');
    const ct = contentType === 'application/json' ? 'application/json' : 'application/x-protobuf';
    if (req.method !== 'POST' || req.url !== '/v1/logs') return this.#answer(res, 404, ct, { message: `no such path ${req.url}` });
    if (this.requireHeader && req.headers[this.requireHeader[0]] !== this.requireHeader[1]) return this.#answer(res, 401, ct, { code: 16, message: 'missing or wrong credentials' });
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
    let decoded: ReturnType<FakeOtlpReceiver['decode']>;
    try {
      decoded = this.decode(body, contentType);
    } catch (err) {
      this.errors.push((err as Error).message);
      return this.#answer(res, 400, ct, { code: 3, message: `cannot decode the request: ${(err as Error).message}` });
    }
    const reply = decoded.logs.length > this.maxRecords ? { status: 413, message: `more than ${this.maxRecords} log records` } : (this.next.shift() ?? this.always ?? {});
    const status = reply.status ?? 200;
    const r: ReceivedRequest = { headers: req.headers, path: req.url, encoding: decoded.encoding, records: decoded.logs.length, status };
    if (decoded.jsonText !== undefined) r.jsonText = decoded.jsonText;
    this.requests.push(r);
    const reject = Math.min(reply.reject ?? 0, decoded.logs.length);
    if (status === 200 && reply.raw === undefined) {
      // Stored on arrival, before any delay.
      this.logs.push(...decoded.logs.slice(0, decoded.logs.length - reject));
      this.rejected.push(...decoded.logs.slice(decoded.logs.length - reject));
    }
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    if (reply.raw) {
      res.writeHead(status, { 'content-type': reply.raw.contentType });
      res.end(reply.raw.body);
      return;
    }
    if (status !== 200) {
      const message = `${reply.message ?? `answered ${status}`}${this.echoHeaders ? ` (request headers: ${JSON.stringify(req.headers)})` : ''}`;
      return this.#answer(res, status, ct, { code: status === 400 ? 3 : 14, message }, reply.retryAfter ? { 'retry-after': reply.retryAfter } : {});
    }
    if (reject > 0 || reply.message) return this.#answer(res, 200, ct, { partialSuccess: { rejectedLogRecords: String(reject), errorMessage: reply.message ?? '' } });
    return this.#answer(res, 200, ct, {});
  }
}
