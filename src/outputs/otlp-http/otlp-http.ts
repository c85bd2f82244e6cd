import { z } from 'zod';
import { secret } from '../../config/secret.ts';
import type { ByteWriter } from '../../delivery/byte-writer.ts';
import { httpAuthSchema } from '../../delivery/http/auth.ts';
import { EndpointOutput, requestHeaders } from '../../delivery/http/endpoint.ts';
import { probeHttp } from '../../delivery/http/probe.ts';
import { readBytes } from '../../delivery/http/status.ts';
import { tlsSchema } from '../../delivery/http/tls.ts';
import { errorMessage } from '../../errors.ts';
import { maskUrl, scrubText } from '../../telemetry/scrub.ts';
import type { OutboundRequest, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { VERSION } from '../../version.ts';
import { judgeOtlpError, partialOutcome, readSuccess } from './answer.ts';
import { toLogRecord, type KeyValue, type MappingOptions } from './mapping.ts';
import { otlpTypes } from './proto.ts';
import { otlpHttpEvent, otlpHttpLogEvents, otlpHttpMetrics } from './telemetry.ts';

/**
 * OpenTelemetry Protocol over HTTP: batches of records as one
 * ExportLogsServiceRequest POSTed to `<endpoint>/v1/logs`, binary protobuf by
 * default or OTLP/JSON. One ResourceLogs (the configured resource
 * attributes) with one ScopeLogs (scope `ktrail`) per request; each record is
 * a LogRecord (mapping.ts). The encoding comes from the official proto
 * definitions through protobuf.js (proto.ts). Answers are read in answer.ts:
 * partial_success, the retryable codes of the specification, 400 dead-lettered.
 */
const RESERVED = new Set(['content-type', 'content-encoding', 'content-length', 'host', 'transfer-encoding']);

const schema = z.strictObject({
  endpoint: z
    .url({ protocol: /^https?$/, error: 'write an http:// or https:// URL, e.g. http://otel-collector:4318' })
    .describe('OTLP/HTTP base URL, e.g. http://otel-collector:4318 (`path` is added to it).'),
  path: z
    .string()
    .regex(/^\//, 'start the path with "/"')
    .default('/v1/logs')
    .describe('Path of the logs service under `endpoint`.'),
  encoding: z.enum(['protobuf', 'json']).default('protobuf').describe('protobuf: binary (application/x-protobuf); json: OTLP/JSON (application/json).'),
  body: z
    .enum(['map', 'string'])
    .default('map')
    .describe('map: the record as a structured AnyValue map (kvlist) that backends can query by field; string: the JSON text as a string body (cheaper, opaque to the backend).'),
  resource_attributes: z
    .record(z.string().min(1), z.union([z.string(), z.number(), z.boolean()]))
    .default({})
    .describe('Attributes of the Resource every log record is sent under, e.g. { service.name: kube-apiserver, k8s.cluster.name: prod }.'),
  headers: z
    .record(
      z.string().min(1).refine((k) => !RESERVED.has(k.toLowerCase()), 'this header is set by ktrail'),
      secret(),
    )
    .default({})
    .describe('Extra request headers (e.g. an API key). Each value is a secret: inline (use ${ENV}) or { file: path }, re-read when the file changes; never logged.'),
  auth: httpAuthSchema.optional(),
  compression: z.enum(['gzip', 'none']).default('gzip').describe('gzip: compress request bodies (Content-Encoding: gzip).'),
  compression_level: z.number().int().min(1).max(9).default(1).describe('gzip level, 1 (fastest) to 9 (smallest).'),
  on_partial_success: z
    .enum(['dead_letter', 'count'])
    .default('dead_letter')
    .describe('When a 200 answer rejects some but not all records (and OTLP does not say which): dead_letter every record of that request (nothing lost), or count the rejected number and treat the request as delivered.'),
  retry_statuses: z
    .array(z.number().int().min(400).max(599))
    .default([])
    .describe('HTTP statuses to retry besides 429, 502, 503, 504 (and 401/403), e.g. [500] for a receiver behind a proxy that answers 500 while it restarts. By the OTLP specification the others are not retried: they are dead-lettered.'),
  enrichment_key: z.string().min(1).default('kubernetes').describe('Top-level key of k8s_metadata enrichment (its target_key): its pod metadata become k8s.* attributes.'),
  tls: tlsSchema.optional(),
});
export type OtlpHttpConfig = z.output<typeof schema>;

/** The answer body read on a 200 (the specification's recommended response limit). */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const WARN_INTERVAL_MS = 60_000;

/** A configured attribute value as an AnyValue. */
function attrValue(v: string | number | boolean): KeyValue['value'] {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isSafeInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

class OtlpHttpOutput extends EndpointOutput {
  readonly #cfg: OtlpHttpConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #name: string;
  readonly #path: string;
  readonly #mapping: MappingOptions;
  readonly #retryStatuses: ReadonlySet<number>;
  /** The request's fixed parts: the resource and the scope, written once. */
  readonly #resource: { attributes: KeyValue[] };
  readonly #scope = { name: 'ktrail', version: VERSION };
  readonly #jsonPrefix: string;
  #lastWarnMs = 0;

  constructor(cfg: OtlpHttpConfig, ctx: OutputContext) {
    super({ ...cfg, url: cfg.endpoint }, {
      connections: 8,
      // The configured headers are secrets, resolved per request (#headers).
      headers: requestHeaders({}, cfg.encoding === 'json' ? 'application/json' : 'application/x-protobuf'),
      log: ctx.log,
      maxWriterBytes: 32 * 1024 * 1024,
    });
    this.#cfg = cfg;
    this.#log = ctx.log;
    this.#metrics = ctx.metrics;
    this.#name = ctx.name;
    this.#path = `${new URL(cfg.endpoint).pathname.replace(/\/+$/, '')}${cfg.path}`;
    this.#mapping = { body: cfg.body, enrichmentKey: cfg.enrichment_key };
    this.#retryStatuses = new Set(cfg.retry_statuses);
    this.#resource = { attributes: Object.entries(cfg.resource_attributes).map(([key, v]) => ({ key, value: attrValue(v) })) };
    this.#jsonPrefix = `{"resourceLogs":[{"resource":${JSON.stringify(this.#resource)},"scopeLogs":[{"scope":${JSON.stringify(this.#scope)},"logRecords":[`;
    // Load the definitions now, not in the first send.
    otlpTypes();
  }

  /** The configured header values (secrets re-read when their file changes). */
  #headers(): { ok: true; headers: Record<string, string> } | { ok: false; outcome: SendOutcome } {
    const headers: Record<string, string> = {};
    try {
      for (const [k, v] of Object.entries(this.#cfg.headers)) headers[k.toLowerCase()] = v.get();
    } catch (err) {
      return { ok: false, outcome: { kind: 'retryable', code: 'credentials_unavailable', detail: `header value unavailable: ${errorMessage(err)}` } };
    }
    return { ok: true, headers };
  }

  #encode(writer: ByteWriter, request: OutboundRequest): Buffer {
    const now = Date.now();
    if (this.#cfg.encoding === 'json') {
      // OTLP/JSON written record by record into the reused buffer: the plain
      // objects are already in the proto3 JSON mapping (see proto.ts).
      writer.write(this.#jsonPrefix);
      for (let i = 0; i < request.records.length; i++) {
        if (i > 0) writer.byte(0x2c);
        writer.write(JSON.stringify(toLogRecord(request.records[i]!, this.#mapping, now)));
      }
      writer.write(']}]}]}');
      return writer.view();
    }
    const logRecords = request.records.map((r) => toLogRecord(r, this.#mapping, now));
    const bytes = otlpTypes().request.encode({ resourceLogs: [{ resource: this.#resource, scopeLogs: [{ scope: this.#scope, logRecords }] }] }).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  protected async sendPart(writer: ByteWriter, request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    const h = this.#headers();
    if (!h.ok) return h.outcome;
    const body = this.#encode(writer, request);
    const x = await this.endpoint.exchange(
      { path: this.#path, method: 'POST', body, extra: h.headers, judge: (status, text, answer) => judgeOtlpError(status, text, answer, this.#retryStatuses) },
      signal,
    );
    if (!x.ok) return x.outcome;
    const bytes = await readBytes(x.res.body, MAX_ANSWER_BYTES);
    const ps = readSuccess(bytes, String(x.res.headers['content-type'] ?? ''));
    if (ps === undefined) {
      return {
        kind: 'retryable',
        code: 'malformed_response',
        detail: `HTTP ${x.res.statusCode} without an ExportLogsServiceResponse (content-type ${String(x.res.headers['content-type'] ?? 'none')}): is ${this.#cfg.endpoint}${this.#cfg.path} an OTLP/HTTP receiver?`,
      };
    }
    const n = request.records.length;
    if (ps.rejected === 0) {
      if (ps.message !== '') this.#warn({ event: otlpHttpEvent.warning, message: ps.message.slice(0, 500) }, 'OTLP receiver accepted every log record with a warning');
      return { kind: 'ok' };
    }
    const outcome = partialOutcome(ps, n, this.#cfg.on_partial_success);
    const action = outcome.kind === 'ok' ? 'count' : 'dead_letter';
    otlpHttpMetrics(this.#metrics).rejected.inc({ output: this.#name, action }, Math.min(ps.rejected, n));
    this.#warn(
      { event: otlpHttpEvent.partial_success, rejected: ps.rejected, records: n, action, message: ps.message.slice(0, 500) },
      action === 'count'
        ? 'OTLP receiver rejected some log records (partial success; on_partial_success: count): counted, not dead-lettered'
        : 'OTLP receiver rejected log records (partial success): the request\'s records are dead-lettered',
    );
    return outcome;
  }

  #warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.#lastWarnMs < WARN_INTERVAL_MS) return;
    this.#lastWarnMs = now;
    this.#log.warn(fields, msg);
  }
}

export const otlpHttpOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'otlp_http',
  description: 'OpenTelemetry Protocol over HTTP (/v1/logs), protobuf or JSON: records as LogRecords with Kubernetes semantic-convention attributes.',
  schema,
  delivery: { batch: { max_bytes: 1024 * 1024, max_records: 5000, flush_interval: 1000 }, concurrency: 4, request_timeout: 30_000 },
  create: (cfg, ctx) => new OtlpHttpOutput(cfg, ctx),
  metrics: otlpHttpMetrics,
  logEvents: otlpHttpLogEvents,
  // An empty export: the specification says a receiver SHOULD answer it with success, and it carries no data.
  probe: async (cfg, ctx) => {
    const url = new URL(cfg.endpoint);
    const path = `${url.pathname.replace(/\/+$/, '')}${cfg.path}`;
    const headers: Record<string, string> = { 'content-type': cfg.encoding === 'json' ? 'application/json' : 'application/x-protobuf' };
    try {
      for (const [k, v] of Object.entries(cfg.headers)) headers[k.toLowerCase()] = v.get();
    } catch (err) {
      return [{ target: `POST ${maskUrl(`${url.origin}${path}`)}`, ok: false, detail: `header value unavailable: ${scrubText(errorMessage(err))}` }];
    }
    const result = await probeHttp(
      {
        url,
        method: 'POST',
        path,
        body: cfg.encoding === 'json' ? Buffer.from('{}') : Buffer.alloc(0),
        headers,
        headerCredentials: Object.keys(cfg.headers).length > 0,
        auth: cfg.auth,
        tls: cfg.tls,
        judge: (status) => (status === 200 ? { ok: true, note: 'an empty export was accepted' } : { ok: false, note: `an empty export answered HTTP ${status}` }),
      },
      ctx,
    );
    return [result];
  },
};
