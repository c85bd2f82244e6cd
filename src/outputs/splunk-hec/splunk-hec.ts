import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { duration } from '../../config/units.ts';
import { secret } from '../../config/secret.ts';
import type { ByteWriter } from '../../delivery/byte-writer.ts';
import { EndpointOutput, requestHeaders, userHeaders } from '../../delivery/http/endpoint.ts';
import { probeHttp } from '../../delivery/http/probe.ts';
import { tlsSchema } from '../../delivery/http/tls.ts';
import { recordTimeMs } from '../../delivery/record-time.ts';
import type { OutboundRequest, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import type { SpooledRecord } from '../../pipeline/record.ts';
import { judgeHecError, parseHecAnswer } from './hec.ts';
import { splunkHecEvent, splunkHecLogEvents } from './telemetry.ts';

/**
 * Splunk HTTP Event Collector: batches of event envelopes to
 * /services/collector/event, and with indexer acknowledgement (on by
 * default) a request counts as delivered only once Splunk says it is
 * indexed: the output sends on its own channel (X-Splunk-Request-Channel),
 * then polls /services/collector/ack for the ackId. An ack that does not
 * come within `ack.timeout` sends the same records again, with the same ids
 * in the `id_field` indexed field, so a search can drop the repeats.
 */
const schema = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, error: 'write an http:// or https:// URL, e.g. https://splunk:8088' })
    .describe('HEC base URL, e.g. https://splunk:8088 (the /services/collector paths are added).'),
  token: secret().describe('HEC token: { file: path } (re-read when it changes) or inline with ${ENV}; sent as "Authorization: Splunk <token>".'),
  index: z.string().min(1).optional().describe('Index to write to (default: the token\'s default index).'),
  source: z.string().min(1).optional().describe('source of every event (default: the input name).'),
  sourcetype: z.string().min(1).default('_json').describe('sourcetype of every event.'),
  host: z.string().min(1).optional().describe('host of every event (default: service.node_name).'),
  fields: z.record(z.string().min(1), z.string()).default({}).describe('Indexed fields added to every event.'),
  id_field: z.string().min(1).default('ktrail_id').describe('Indexed field that carries the record id (auditID:stage, uid:resourceVersion): the same on every resend.'),
  ack: z
    .strictObject({
      enabled: z.boolean().default(true).describe('Wait for indexer acknowledgement before a request counts as delivered (the token must have it enabled).'),
      timeout: duration({ minMs: 100 }).default(120_000).describe('Send the records again when their ack has not come after this long.'),
      poll_interval: duration({ minMs: 10 }).default(1000).describe('How often to ask /services/collector/ack.'),
    })
    .prefault({})
    .describe('Indexer acknowledgement.'),
  compression: z.enum(['gzip', 'none']).default('gzip').describe('gzip: compress request bodies (Content-Encoding: gzip).'),
  compression_level: z.number().int().min(1).max(9).default(1).describe('gzip level, 1 (fastest) to 9 (smallest).'),
  headers: z.record(z.string().min(1), z.string()).default({}).describe('Extra request headers.'),
  tls: tlsSchema.optional(),
});
export type SplunkHecConfig = z.output<typeof schema>;

/** The event time in seconds (src/delivery/record-time.ts: stageTimestamp, lastTimestamp, eventTime, …), else the record time. */
export function eventTimeSeconds(r: SpooledRecord): number {
  return recordTimeMs(r) / 1000;
}

function describe(o: SendOutcome): string {
  return 'detail' in o ? o.detail : o.kind;
}

class SplunkHecOutput extends EndpointOutput {
  readonly #cfg: SplunkHecConfig;
  readonly #ctx: OutputContext;
  readonly #base: string;
  readonly #channel = randomUUID();
  readonly #fixed: string;
  /** The configured indexed fields and the id field's key, written once: only the id value follows per event. */
  readonly #fieldsPrefix: string;

  constructor(cfg: SplunkHecConfig, ctx: OutputContext) {
    super({ ...cfg, auth: { splunk_token: cfg.token } }, { connections: 8, headers: requestHeaders(cfg.headers, 'application/json'), log: ctx.log, maxWriterBytes: 32 * 1024 * 1024 });
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#base = new URL(cfg.url).pathname.replace(/\/+$/, '');
    // The envelope keys every event shares, after "time" and before "event".
    const host = JSON.stringify(cfg.host ?? ctx.nodeName);
    this.#fixed = `,"host":${host},"sourcetype":${JSON.stringify(cfg.sourcetype)}${cfg.index ? `,"index":${JSON.stringify(cfg.index)}` : ''}`;
    let prefix = '';
    for (const [k, v] of Object.entries(cfg.fields)) prefix += `${JSON.stringify(k)}:${JSON.stringify(v)},`;
    this.#fieldsPrefix = `${prefix}${JSON.stringify(cfg.id_field)}:`;
  }

  override async start(): Promise<void> {
    await super.start();
    // The health endpoint says whether HEC takes data now. Start does not wait for it (the spool
    // holds the records meanwhile); the answer is logged.
    void this.#health();
  }

  async #health(): Promise<void> {
    const x = await this.endpoint.exchange({ path: `${this.#base}/services/collector/health`, method: 'GET', compress: false }, AbortSignal.timeout(5000));
    if (x.ok) {
      await x.res.body.dump().catch(() => undefined);
      this.#ctx.log.info({ event: splunkHecEvent.healthy, url: this.#cfg.url }, 'Splunk HEC is healthy');
    } else {
      this.#ctx.log.warn({ event: splunkHecEvent.unhealthy, url: this.#cfg.url, reason: describe(x.outcome) }, 'Splunk HEC health check failed at start; records stay spooled until it takes them');
    }
  }

  protected async sendPart(writer: ByteWriter, request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    const source = this.#cfg.source !== undefined ? JSON.stringify(this.#cfg.source) : undefined;
    for (const r of request.records) {
      writer.write(`{"time":${eventTimeSeconds(r).toFixed(3)}${this.#fixed},"source":${source ?? JSON.stringify(r.input)},"fields":{${this.#fieldsPrefix}${JSON.stringify(r.id)}},"event":`);
      writer.write(r.json);
      writer.write('}\n');
    }
    const ack = this.#cfg.ack.enabled;
    const records = request.records.length;
    const x = await this.endpoint.exchange(
      {
        path: `${this.#base}/services/collector/event`,
        method: 'POST',
        body: writer.view(),
        extra: { 'x-splunk-request-channel': this.#channel },
        judge: (status, body) => judgeHecError(status, body, records, ack),
      },
      signal,
    );
    if (!x.ok) return x.outcome;
    const answer = parseHecAnswer(await x.res.body.text());
    if (!ack) return { kind: 'ok' };
    if (answer?.ackId === undefined) {
      return { kind: 'retryable', code: 'malformed_response', detail: 'HEC answered without an ackId: indexer acknowledgement is disabled for this token (enable it, or set ack.enabled: false)' };
    }
    return this.#waitForAck(answer.ackId, signal);
  }

  async #waitForAck(ackId: number, signal: AbortSignal): Promise<SendOutcome> {
    const { timeout, poll_interval } = this.#cfg.ack;
    const deadline = Date.now() + timeout;
    const body = Buffer.from(JSON.stringify({ acks: [ackId] }));
    while (!signal.aborted) {
      await sleep(poll_interval, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) break;
      const x = await this.endpoint.exchange(
        { path: `${this.#base}/services/collector/ack?channel=${this.#channel}`, method: 'POST', body, compress: false, extra: { 'x-splunk-request-channel': this.#channel } },
        signal,
      );
      if (x.ok) {
        const a = JSON.parse(await x.res.body.text()) as { acks?: Record<string, boolean> };
        if (a.acks?.[String(ackId)] === true) return { kind: 'ok' };
      } else if (x.outcome.kind !== 'retryable') {
        return { kind: 'retryable', code: 'malformed_response', detail: `ack query failed: ${describe(x.outcome)}` };
      }
      if (Date.now() >= deadline) {
        return { kind: 'retryable', code: 'ack_timeout', detail: `no indexer acknowledgement for ackId ${ackId} within ${timeout} ms: sending the records again (same ${this.#cfg.id_field})` };
      }
    }
    return { kind: 'retryable', code: 'aborted', detail: 'aborted while waiting for the indexer acknowledgement' };
  }
}

export const splunkHecOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'splunk_hec',
  description: 'Splunk HTTP Event Collector, with indexer acknowledgement: delivered only once indexed.',
  schema,
  logEvents: splunkHecLogEvents,
  // request_timeout covers the wait for the ack.
  delivery: { batch: { max_bytes: 1024 * 1024, max_records: 10_000, flush_interval: 1000 }, concurrency: 4, request_timeout: 180_000 },
  create: (cfg, ctx) => new SplunkHecOutput(cfg, ctx),
  probe: async (cfg, ctx) => {
    const url = new URL(cfg.url);
    const base = url.pathname.replace(/\/+$/, '');
    const result = await probeHttp(
      {
        url,
        method: 'GET',
        path: `${base}/services/collector/health`,
        headers: userHeaders(cfg.headers),
        auth: { splunk_token: cfg.token },
        tls: cfg.tls,
        judge: (status) => (status === 200 ? { ok: true, note: 'HEC is healthy' } : { ok: false, note: `health answered HTTP ${status}` }),
      },
      ctx,
    );
    return [result];
  },
};
