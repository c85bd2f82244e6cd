import { z } from 'zod';
import type { OutboundRequest, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import { httpAuthSchema } from '../../delivery/http/auth.ts';
import type { ByteWriter } from '../../delivery/byte-writer.ts';
import { EndpointOutput, requestHeaders, userHeaders } from '../../delivery/http/endpoint.ts';
import { probeHttp } from '../../delivery/http/probe.ts';
import { tlsSchema } from '../../delivery/http/tls.ts';

/**
 * Posts batches to any HTTP endpoint as NDJSON or a JSON array.
 *
 * Every request carries `Idempotency-Key: <request.key>`: the same value on
 * every retry of that request and after a restart (the delivery runner journals
 * request composition), so a receiver that dedupes by the header sees a
 * replay as a duplicate. Results: 2xx delivered; 408/429/5xx, 401/403 and
 * network errors retried (Retry-After honoured); 413 split by the sender;
 * other 4xx dead-lettered with the status and body.
 */
const schema = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'write an http:// or https:// URL' }).describe('Endpoint URL (http:// or https://); user:password@ in it is sent as basic auth.'),
  method: z.enum(['POST', 'PUT']).default('POST').describe('HTTP method.'),
  format: z.enum(['ndjson', 'json_array']).default('ndjson').describe('ndjson: one JSON document per line; json_array: one JSON array per request.'),
  compression: z.enum(['none', 'gzip']).default('none').describe('gzip: compress request bodies (Content-Encoding: gzip).'),
  compression_level: z.number().int().min(1).max(9).default(1).describe('gzip level, 1 (fastest) to 9 (smallest).'),
  headers: z.record(z.string().min(1), z.string()).default({}).describe('Extra request headers (values may use ${ENV}); may override Content-Type.'),
  idempotency_header: z.string().default('Idempotency-Key').describe('Header that carries the request key, stable across retries and restarts; "" sends none.'),
  auth: httpAuthSchema.optional(),
  tls: tlsSchema.optional(),
  probe: z
    .strictObject({
      url: z
        .url({ protocol: /^https?$/, error: 'write an http:// or https:// URL' })
        .optional()
        .describe('Health endpoint to request instead of `url`; it must answer 2xx. Sent with the output\'s auth, headers and TLS settings.'),
      method: z.enum(['HEAD', 'OPTIONS', 'GET']).default('HEAD').describe('Method of the probe request.'),
    })
    .default({ method: 'HEAD' })
    .describe('What `ktrail check --connect` requests. Default: HEAD on `url`, where any answer but 401/403 and 5xx counts (many endpoints take only POST).'),
});
export type HttpOutputConfig = z.output<typeof schema>;

const RESERVED = new Set(['content-length', 'content-encoding', 'host', 'transfer-encoding']);

class HttpOutput extends EndpointOutput {
  readonly #cfg: HttpOutputConfig;
  readonly #path: string;

  constructor(cfg: HttpOutputConfig, ctx: OutputContext) {
    super(cfg, {
      connections: 8,
      headers: requestHeaders(cfg.headers, cfg.format === 'ndjson' ? 'application/x-ndjson' : 'application/json', { reserved: RESERVED, userContentType: true }),
      log: ctx.log,
      maxWriterBytes: 16 * 1024 * 1024,
    });
    this.#cfg = cfg;
    const url = new URL(cfg.url);
    this.#path = `${url.pathname}${url.search}`;
  }

  protected async sendPart(writer: ByteWriter, request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    const arr = this.#cfg.format === 'json_array';
    if (arr) writer.byte(0x5b);
    for (let i = 0; i < request.records.length; i++) {
      if (arr && i > 0) writer.byte(0x2c);
      const r = request.records[i]!;
      if (r.bytes !== undefined) writer.bytes(r.bytes);
      else writer.write(r.json);
      if (!arr) writer.byte(0x0a);
    }
    if (arr) writer.byte(0x5d);
    const extra = this.#cfg.idempotency_header ? { [this.#cfg.idempotency_header.toLowerCase()]: request.key } : undefined;
    const x = await this.endpoint.exchange({ path: this.#path, method: this.#cfg.method, body: writer.view(), extra }, signal);
    if (!x.ok) return x.outcome;
    await x.res.body.dump().catch(() => undefined);
    return { kind: 'ok' };
  }
}

export const httpOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'http',
  description: 'NDJSON or a JSON array to an HTTP endpoint, with an Idempotency-Key per request.',
  schema,
  delivery: { batch: { max_bytes: 1024 * 1024, flush_interval: 1000 }, concurrency: 1, request_timeout: 30_000 },
  create: (cfg, ctx) => new HttpOutput(cfg, ctx),
  probe: async (cfg, ctx) => {
    const explicit = cfg.probe.url !== undefined;
    const url = new URL(cfg.probe.url ?? cfg.url);
    const headers = userHeaders(cfg.headers, RESERVED);
    const method = cfg.probe.method;
    const result = await probeHttp(
      {
        url,
        method,
        path: `${url.pathname}${url.search}`,
        headers,
        auth: cfg.auth,
        tls: cfg.tls,
        judge: (status) => {
          if (status >= 200 && status < 300) return { ok: true, note: '' };
          // A configured health endpoint must be healthy; the ingest URL itself often refuses other methods than POST.
          if (explicit || status >= 500 || status === 407) return { ok: false, note: `${method} answered HTTP ${status}` };
          return { ok: true, note: `${method} answered HTTP ${status}, which does not refuse the credentials` };
        },
      },
      ctx,
    );
    return [result];
  },
};
