import { z } from 'zod';
import type { OutboundRequest, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import { errorMessage } from '../../errors.ts';
import { esAuthSchema } from '../../delivery/http/auth.ts';
import type { ByteWriter } from '../../delivery/byte-writer.ts';
import { EndpointOutput, requestHeaders } from '../../delivery/http/endpoint.ts';
import { transportFailure } from '../../delivery/http/status.ts';
import { parsePattern, TimePattern } from '../../delivery/time-pattern.ts';
import { probeHttp } from '../../delivery/http/probe.ts';
import { tlsSchema } from '../../delivery/http/tls.ts';
import { BULK_FILTER_PATH, BulkEncoder, interpretBulkResponse } from './bulk.ts';
import { MANIFEST_INPUT } from '../../manifest/record.ts';
import { elasticsearchMetrics } from './telemetry.ts';

/**
 * Elasticsearch 7/8/9 and OpenSearch 1/2 through the `_bulk` API.
 *
 * Idempotent by construction: every document is written with `_id` = the
 * record id and (by default) `op_type: create`, so a replay after a retry or
 * a crash answers 409 for what is already there, which counts as delivered.
 * Per-item results go back to the delivery runner: failed items alone are
 * retried (429, 5xx, es_rejected_execution_exception) or dead-lettered
 * (mapping/parsing errors), never the whole batch.
 */
const TARGET_VARS = ['input'] as const;

const targetPattern = (what: string) =>
  z
    .string()
    .min(1)
    .superRefine((v, ctx) => {
      const p = parsePattern(v, TARGET_VARS);
      if ('error' in p) ctx.addIssue({ code: 'custom', message: p.error });
      else if (/[A-Z\\/*?"<>| ,#:]/.test(v.replace(/%[YmdHM%]|\{input\}/g, ''))) {
        ctx.addIssue({ code: 'custom', message: `${what} names must be lowercase, without spaces or any of \\ / * ? " < > | , # :` });
      } else if (/^[_\-+]/.test(v)) {
        ctx.addIssue({ code: 'custom', message: `${what} names must not start with _, - or +` });
      }
    });

export const DEFAULT_INDEX = 'ktrail-%Y.%m.%d';

const schema = z
  .strictObject({
    url: z
      .url({ protocol: /^https?$/, error: 'write an http:// or https:// URL, e.g. https://elasticsearch:9200' })
      .describe('Cluster URL, e.g. https://elasticsearch:9200 (a path prefix is kept; user:password@ is sent as basic auth).'),
    index: targetPattern('index')
      .optional()
      .describe(`Index name pattern: %Y %m %d %H %M from the record time (UTC), {input}. Default ${DEFAULT_INDEX} unless data_stream is set.`),
    data_stream: targetPattern('data stream').optional().describe('Write to this data stream instead of an index (op_type create; @timestamp is added).'),
    op_type: z.enum(['create', 'index']).default('create').describe('create: a replayed record answers 409 and counts as delivered; index: it overwrites itself.'),
    pipeline: z.string().min(1).optional().describe('Ingest pipeline to run on every document.'),
    compression: z.enum(['gzip', 'none']).default('gzip').describe('gzip: compress request bodies (Content-Encoding: gzip).'),
    compression_level: z.number().int().min(1).max(9).default(1).describe('gzip level, 1 (fastest) to 9 (smallest).'),
    add_timestamp: z.boolean().default(true).describe('Add @timestamp (the record time, ISO 8601 UTC) to documents that have none.'),
    manifest_index: targetPattern('manifest index')
      .default('ktrail-manifests')
      .describe('With manifest.enabled: the index of the manifest documents (one per seal, `_id` ktrail-manifest:<output>:<seq>), naming the data indices and ids they cover.'),
    headers: z.record(z.string().min(1), z.string()).default({}).describe('Extra request headers.'),
    auth: esAuthSchema.optional(),
    tls: tlsSchema.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.index !== undefined && c.data_stream !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['data_stream'], message: 'set either index or data_stream, not both' });
    }
    if (c.data_stream !== undefined && c.op_type !== 'create') {
      ctx.addIssue({ code: 'custom', path: ['op_type'], message: 'data streams accept only op_type: create' });
    }
  });
export type ElasticsearchConfig = z.output<typeof schema>;

class ElasticsearchOutput extends EndpointOutput {
  readonly #cfg: ElasticsearchConfig;
  readonly #ctx: OutputContext;
  readonly #encoder: BulkEncoder;
  readonly #path: string;
  readonly #target: TimePattern;

  constructor(cfg: ElasticsearchConfig, ctx: OutputContext) {
    super(cfg, { connections: 16, headers: requestHeaders(cfg.headers, 'application/x-ndjson'), log: ctx.log, maxWriterBytes: 32 * 1024 * 1024 });
    this.#cfg = cfg;
    this.#ctx = ctx;
    const url = new URL(cfg.url);
    const base = url.pathname.replace(/\/+$/, '');
    const query = new URLSearchParams({ filter_path: BULK_FILTER_PATH });
    if (cfg.pipeline) query.set('pipeline', cfg.pipeline);
    this.#path = `${base}/_bulk?${query.toString()}`;
    this.#encoder = new BulkEncoder({
      opType: cfg.data_stream !== undefined ? 'create' : cfg.op_type,
      target: new TimePattern(cfg.data_stream ?? cfg.index ?? DEFAULT_INDEX, TARGET_VARS),
      addTimestamp: cfg.add_timestamp,
      manifestIndex: cfg.manifest_index,
    });
    this.#target = new TimePattern(cfg.data_stream ?? cfg.index ?? DEFAULT_INDEX, TARGET_VARS);
  }

  /** With manifests on: which indices hold this request's records, for the manifest that seals its batches. */
  #noteItems(request: OutboundRequest): void {
    const sink = this.#ctx.manifest;
    if (!sink) return;
    const counts = new Map<string, number>();
    for (const r of request.records) {
      if (r.input === MANIFEST_INPUT) continue;
      const index = this.#target.format(r.timeMs, { input: r.input });
      counts.set(index, (counts.get(index) ?? 0) + 1);
    }
    if (counts.size === 0) return;
    sink.noteItems(
      request.firstBatchId,
      request.lastBatchId,
      [...counts].map(([index, records]) => ({ key: `${index}@${request.firstBatchId}-${request.lastBatchId}`, index, records })),
    );
  }

  protected async sendPart(writer: ByteWriter, request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    this.#encoder.encode(writer, request.records);
    // A 404 on _bulk means the URL (or a proxy in front) is wrong, not the data: retry until fixed.
    const x = await this.endpoint.exchange({ path: this.#path, method: 'POST', body: writer.view(), retryStatus: (status) => status === 404 }, signal);
    if (!x.ok) return x.outcome;
    if (x.res.statusCode !== 200) {
      // Another 2xx is not a bulk response: retryable, never delivered.
      await x.res.body.dump().catch(() => undefined);
      return { kind: 'retryable', code: 'malformed_response', detail: `HTTP ${x.res.statusCode} from _bulk (expected 200 with per-item results)` };
    }
    let text: string;
    try {
      text = await x.res.body.text();
    } catch (err) {
      return transportFailure(err, signal);
    }
    return this.#items(text, request);
  }

  #items(text: string, request: OutboundRequest): SendOutcome {
    const opType = this.#cfg.data_stream !== undefined ? 'create' : this.#cfg.op_type;
    let result;
    try {
      result = interpretBulkResponse(text, request.records.length, opType);
    } catch (err) {
      return { kind: 'retryable', code: 'malformed_response', detail: `malformed bulk response: ${errorMessage(err)}` };
    }
    const { metrics, name } = this.#ctx;
    if (result.duplicates > 0) elasticsearchMetrics(metrics).duplicates.inc({ output: name }, result.duplicates);
    this.#noteItems(request);
    if (result.failures.length === 0) return { kind: 'ok' };
    // The delivery runner counts each failed item by its code.
    return { kind: 'partial', failures: result.failures };
  }

}

export const elasticsearchOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'elasticsearch',
  description: 'Elasticsearch 7/8/9 and OpenSearch 1/2 via _bulk; idempotent by record id.',
  schema,
  metrics: elasticsearchMetrics,
  delivery: { batch: { max_bytes: 5 * 1024 * 1024, max_records: 10_000, flush_interval: 1000 }, concurrency: 2, request_timeout: 60_000 },
  create: (cfg, ctx) => new ElasticsearchOutput(cfg, ctx),
  probe: async (cfg, ctx) => {
    const url = new URL(cfg.url);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(cfg.headers)) headers[k.toLowerCase()] = v;
    const result = await probeHttp(
      {
        url,
        method: 'GET',
        path: `${url.pathname.replace(/\/+$/, '')}/_cluster/health`,
        headers,
        auth: cfg.auth,
        tls: cfg.tls,
        judge: (status, body) => {
          if (status < 200 || status >= 300) return { ok: false, note: `GET _cluster/health answered HTTP ${status}` };
          let health: string | undefined;
          try {
            health = (JSON.parse(body) as { status?: string }).status;
          } catch {
            // Not JSON: a proxy's page, say.
          }
          if (health === undefined) return { ok: false, note: 'the answer is not Elasticsearch/OpenSearch cluster health (a proxy or another service at this URL?)' };
          return { ok: true, note: `cluster status ${health}` };
        },
      },
      ctx,
    );
    return [result];
  },
};
