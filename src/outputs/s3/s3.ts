import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { z } from 'zod';
import type { SpooledRecord } from '../../pipeline/record.ts';
import type { ManifestItem, OutboundRequest, Output, OutputContext, OutputPlugin, ProbeContext, ProbeResult, SendOutcome } from '../../plugin.ts';
import { MANIFEST_INPUT, manifestSeqOf } from '../../manifest/record.ts';
import { secret, type Secret } from '../../config/secret.ts';
import { duration, size } from '../../config/units.ts';
import { errorMessage } from '../../errors.ts';
import { ByteWriterPool } from '../../delivery/byte-writer.ts';
import { maskUrl, scrubText } from '../../telemetry/scrub.ts';
import { transportFailure } from '../../delivery/http/status.ts';
import { httpCode } from '../../delivery/outcome.ts';
import { describeTransportError, tlsWord } from '../../delivery/http/probe.ts';
import { parsePattern, TimePattern } from '../../delivery/time-pattern.ts';
import { tlsSchema } from '../../delivery/http/tls.ts';
import { S3Client, S3Error, type AwsCredentials, type CompletedPart, type CredentialProvider } from './s3-client.ts';
import { s3Event, s3LogEvents } from './telemetry.ts';

/**
 * Gzipped NDJSON objects in S3 (or an S3-compatible store).
 *
 * One request of the delivery runner is one object (or one per input when the
 * key uses `{input}`), so objects roll by `max_object_bytes` (uncompressed)
 * and `max_object_age` through the sender's batching. The key contains
 * `{batch}` = `request.key`, which the sender keeps stable across retries and
 * restarts: a retried or replayed upload overwrites the same object instead
 * of adding a duplicate.
 */
const gzip = promisify(zlib.gzip);

const KEY_VARS = ['node', 'input', 'batch', 'spool_id'] as const;
export const DEFAULT_KEY_FORMAT = 'ktrail/{input}/%Y/%m/%d/%H/{node}-{spool_id}-{batch}.ndjson.gz';
const MIB = 1024 * 1024;
const MAX_PARTS = 10_000;

const keyFormat = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    const p = parsePattern(v, KEY_VARS);
    if ('error' in p) ctx.addIssue({ code: 'custom', message: p.error });
    else if (!v.includes('{batch}')) {
      ctx.addIssue({ code: 'custom', message: 'key_format must contain {batch}: it makes a retried upload overwrite the same object instead of duplicating it' });
    } else if (v.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'key_format must not start with "/"' });
  });

/** Defaults of max_object_bytes and max_object_age, which are also the output's batch limits. */
const DEFAULT_OBJECT_BYTES = 32 * MIB;
const DEFAULT_OBJECT_AGE_MS = 60_000;

const schema = z
  .strictObject({
    bucket: z.string().min(3).max(63).describe('Bucket name.'),
    region: z.string().min(1).optional().describe('Region for signing and the default endpoint. Default: $AWS_REGION, else $AWS_DEFAULT_REGION, else us-east-1.'),
    endpoint: z
      .url({ protocol: /^https?$/, error: 'write an http:// or https:// URL' })
      .optional()
      .describe('S3-compatible store URL (MinIO, Ceph, R2, ...). Default https://s3.<region>.amazonaws.com.'),
    force_path_style: z.boolean().default(false).describe('Address the bucket as <endpoint>/<bucket>/<key> instead of <bucket>.<endpoint host>.'),
    key_format: keyFormat
      .default(DEFAULT_KEY_FORMAT)
      .describe('Object key: %Y %m %d %H %M from the first record time (UTC), {node}, {input}, {batch} (required), {spool_id}.'),
    compression_level: z.number().int().min(0).max(9).default(1).describe('gzip level of the objects, 0 (store) to 9 (smallest).'),
    max_object_bytes: size()
      .pipe(z.number().min(1024, 'max_object_bytes must be at least 1KiB'))
      .default(DEFAULT_OBJECT_BYTES)
      .describe('Roll an object at this many uncompressed bytes (the sender batch size).'),
    max_object_age: duration()
      .pipe(z.number().min(100, 'max_object_age must be at least 100ms'))
      .default(DEFAULT_OBJECT_AGE_MS)
      .describe('Upload an object once its oldest record waited this long (the sender flush interval).'),
    multipart_threshold: size().pipe(z.number().min(1)).default(16 * MIB).describe('Compressed objects of this size or more use a multipart upload.'),
    multipart_part_bytes: size()
      .pipe(z.number().min(5 * MIB, 'S3 parts are at least 5MiB'))
      .default(8 * MIB)
      .describe('Part size of multipart uploads (at least 5MiB).'),
    storage_class: z
      .string()
      .regex(/^[A-Z_]+$/, 'write the S3 storage class, e.g. STANDARD_IA or GLACIER_IR')
      .optional()
      .describe('x-amz-storage-class, e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR. Default: the bucket default.'),
    sse: z.enum(['AES256', 'aws:kms', 'aws:kms:dsse']).optional().describe('Server-side encryption. Default: the bucket default.'),
    kms_key_id: z.string().min(1).optional().describe('KMS key id or ARN for sse: aws:kms.'),
    access_key_id: secret().optional().describe('Static access key (S3-compatible stores). Default: the AWS credential chain.'),
    secret_access_key: secret().optional().describe('Static secret key, with access_key_id.'),
    session_token: secret().optional().describe('Session token for temporary static credentials.'),
    tls: tlsSchema.optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.access_key_id === undefined) !== (c.secret_access_key === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['secret_access_key'], message: 'access_key_id and secret_access_key go together' });
    }
    if (c.session_token !== undefined && c.access_key_id === undefined) {
      ctx.addIssue({ code: 'custom', path: ['session_token'], message: 'session_token needs access_key_id and secret_access_key' });
    }
    if (c.kms_key_id !== undefined && c.sse !== 'aws:kms' && c.sse !== 'aws:kms:dsse') {
      ctx.addIssue({ code: 'custom', path: ['kms_key_id'], message: 'kms_key_id needs sse: aws:kms (or aws:kms:dsse)' });
    }
  });
export type S3OutputConfig = z.output<typeof schema>;

/** S3 error codes worth a retry although their status is 4xx. */
const RETRYABLE_CODES = new Set([
  'ExpiredToken',
  'TokenRefreshRequired',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'IncompleteBody',
  'BadDigest',
  'XAmzContentSHA256Mismatch',
  'SlowDown',
  'NoSuchUpload',
  // The bucket may be created after the agent (deployment order): retry, do not dead-letter the stream.
  'NoSuchBucket',
]);

const PROBLEM_LOG_INTERVAL_MS = 60_000;

class S3Output implements Output {
  readonly #cfg: S3OutputConfig;
  readonly #ctx: OutputContext;
  readonly #key: TimePattern;
  readonly #writers = new ByteWriterPool(64 * MIB);
  readonly #objectHeaders: Record<string, string>;
  #client: S3Client | undefined;
  #spoolId = '';
  #lastProblemLogMs = 0;

  constructor(cfg: S3OutputConfig, ctx: OutputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#key = new TimePattern(cfg.key_format, KEY_VARS);
    const h: Record<string, string> = { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' };
    if (cfg.storage_class) h['x-amz-storage-class'] = cfg.storage_class;
    if (cfg.sse) h['x-amz-server-side-encryption'] = cfg.sse;
    if (cfg.kms_key_id) h['x-amz-server-side-encryption-aws-kms-key-id'] = cfg.kms_key_id;
    this.#objectHeaders = h;
  }

  async start(): Promise<void> {
    const cfg = this.#cfg;
    if (this.#key.vars.has('spool_id')) this.#spoolId = spoolIdentity(this.#ctx);
    this.#client = await clientFor(cfg, this.#ctx.log);
    this.#client.start();
  }

  /** The object key for records of one object (time of its first record, UTC). */
  keyFor(request: OutboundRequest, first: SpooledRecord): string {
    return this.#key.format(first.timeMs, { node: this.#ctx.nodeName, input: first.input, batch: request.key, spool_id: this.#spoolId });
  }

  /**
   * Where a manifest goes: `<static prefix of key_format>manifests/<node>/<output>-<seq>.json`,
   * beside the data objects and stable across retries (the seq is in the record id).
   */
  manifestKey(record: SpooledRecord): string {
    const seq = String(manifestSeqOf(record.id)).padStart(10, '0');
    return `${manifestPrefix(this.#cfg.key_format)}${this.#ctx.nodeName}/${this.#ctx.name}-${seq}.json`;
  }

  async send(request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    if (!this.#client) await this.start();
    const manifests = request.records.filter((r) => r.input === MANIFEST_INPUT);
    const data = manifests.length === 0 ? request.records : request.records.filter((r) => r.input !== MANIFEST_INPUT);
    const objects = data.length === 0 ? [] : this.#key.vars.has('input') ? groupByInput(data) : [data];
    try {
      // Objects already written by an earlier attempt are written again under the same key: harmless.
      const items: ManifestItem[] = [];
      for (const records of objects) {
        const key = this.keyFor(request, records[0]!);
        const etag = await this.#putRecords(key, records, signal);
        items.push({ key, etag, records: records.length });
      }
      if (items.length > 0) this.#ctx.manifest?.noteItems(request.firstBatchId, request.lastBatchId, items);
      // A manifest names objects acknowledged before it was sealed, so it is written after them.
      for (const m of manifests) await this.#client!.putObject(this.manifestKey(m), Buffer.from(m.json), MANIFEST_HEADERS, signal);
      return { kind: 'ok' };
    } catch (err) {
      if (err instanceof S3Error) return this.#classify(err);
      return transportFailure(err, signal);
    }
  }

  async #putRecords(key: string, records: readonly SpooledRecord[], signal: AbortSignal): Promise<string> {
    const writer = this.#writers.take();
    let body: Buffer;
    try {
      for (const r of records) {
        writer.write(r.json);
        writer.byte(0x0a);
      }
      body = await gzip(writer.view(), { level: this.#cfg.compression_level });
    } finally {
      this.#writers.give(writer);
    }
    if (body.length < this.#cfg.multipart_threshold) return this.#client!.putObject(key, body, this.#objectHeaders, signal);
    return this.#multipart(key, body, signal);
  }

  async #multipart(key: string, body: Buffer, signal: AbortSignal): Promise<string> {
    const client = this.#client!;
    const partBytes = Math.max(this.#cfg.multipart_part_bytes, Math.ceil(body.length / MAX_PARTS));
    const uploadId = await client.createMultipartUpload(key, this.#objectHeaders, signal);
    try {
      const parts: CompletedPart[] = [];
      for (let off = 0, n = 1; off < body.length; off += partBytes, n++) {
        const etag = await client.uploadPart(key, uploadId, n, body.subarray(off, Math.min(body.length, off + partBytes)), signal);
        parts.push({ partNumber: n, etag });
      }
      return await client.completeMultipartUpload(key, uploadId, parts, signal);
    } catch (err) {
      // The next attempt starts a new upload; free the parts of this one. A crash
      // here leaves them behind: a lifecycle rule (AbortIncompleteMultipartUpload) cleans those.
      await client.abortMultipartUpload(key, uploadId, AbortSignal.timeout(5000)).catch((abortErr: unknown) => {
        this.#ctx.log.warn({ event: s3Event.abort_failed, key, err: errorMessage(abortErr) }, 'could not abort a failed multipart upload; a bucket lifecycle rule should clean it');
      });
      throw err;
    }
  }

  #classify(err: S3Error): SendOutcome {
    const detail = `${err.status === 0 ? err.code : `HTTP ${err.status} ${err.code}`}: ${err.message}`.slice(0, 500);
    const code = err.status === 0 ? 'network' : httpCode(err.status);
    if (err.status === 0 || err.status === 403 || err.code === 'NoSuchBucket') {
      this.#logProblem(err, detail);
      return { kind: 'retryable', code, detail };
    }
    if (err.status === 413 || err.code === 'EntityTooLarge') return { kind: 'too_large', code, detail };
    if (err.status === 408 || err.status === 429 || err.status >= 500 || RETRYABLE_CODES.has(err.code)) {
      return { kind: 'retryable', code, detail, retryAfterMs: err.retryAfterMs };
    }
    if (err.status >= 400) return { kind: 'permanent', code, detail };
    return { kind: 'retryable', code, detail };
  }

  #logProblem(err: S3Error, reason: string): void {
    const now = Date.now();
    if (now - this.#lastProblemLogMs < PROBLEM_LOG_INTERVAL_MS) return;
    this.#lastProblemLogMs = now;
    const what =
      err.code === 'NoSuchBucket'
        ? `bucket ${this.#cfg.bucket} does not exist`
        : err.status === 0
          ? 'no usable AWS credentials'
          : 'S3 refused the request (expired or wrong credentials, or a policy denies it)';
    this.#ctx.log.error({ event: s3Event.refused, bucket: this.#cfg.bucket, reason }, `${what}; retrying until fixed — nothing is dropped, the spool holds the data`);
  }

  async close(): Promise<void> {
    await this.#client?.close();
  }
}

const MANIFEST_HEADERS = { 'content-type': 'application/json' };

/** The part of key_format before its first variable, up to its last slash, then `manifests/`. */
export function manifestPrefix(keyFormat: string): string {
  const firstVar = keyFormat.search(/[{%]/);
  const fixed = firstVar === -1 ? keyFormat : keyFormat.slice(0, firstVar);
  return `${fixed.slice(0, fixed.lastIndexOf('/') + 1)}manifests/`;
}

function groupByInput(records: readonly SpooledRecord[]): SpooledRecord[][] {
  const first = records[0]!.input;
  if (records.every((r) => r.input === first)) return [records as SpooledRecord[]];
  const byInput = new Map<string, SpooledRecord[]>();
  for (const r of records) {
    let list = byInput.get(r.input);
    if (!list) byInput.set(r.input, (list = []));
    list.push(r);
  }
  return [...byInput.values()];
}

/**
 * A random id created once per state database. Spool batch ids restart at 1
 * when the state directory is lost; with this id in the key a new spool can
 * never overwrite objects an earlier one wrote.
 */
function spoolIdentity(ctx: OutputContext): string {
  ctx.state.migrate('s3', ['CREATE TABLE s3_spool_identity (id TEXT NOT NULL)']);
  const db = ctx.state.db;
  const row = db.prepare('SELECT id FROM s3_spool_identity LIMIT 1').get() as { id: string } | undefined;
  if (row) return row.id;
  const id = randomBytes(4).toString('hex');
  db.prepare('INSERT INTO s3_spool_identity (id) VALUES (?)').run(id);
  return id;
}

async function credentialProvider(cfg: S3OutputConfig): Promise<CredentialProvider> {
  if (cfg.access_key_id && cfg.secret_access_key) {
    const id: Secret = cfg.access_key_id;
    const key: Secret = cfg.secret_access_key;
    const token: Secret | undefined = cfg.session_token;
    // Files are re-read when they change, so rotated static keys are picked up.
    return async (): Promise<AwsCredentials> => {
      const c: AwsCredentials = { accessKeyId: id.get(), secretAccessKey: key.get() };
      const t = token?.get();
      if (t) c.sessionToken = t;
      return c;
    };
  }
  // Env, shared config/credentials files, IRSA web identity, EKS Pod Identity,
  // ECS, IMDSv2; memoized, and refreshed shortly before the credentials expire.
  const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers');
  const chain = fromNodeProviderChain();
  return () => chain() as Promise<AwsCredentials>;
}

export const s3Output: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 's3',
  description: 'Gzipped NDJSON objects in S3 or an S3-compatible store; keys stable across retries.',
  schema,
  logEvents: s3LogEvents,
  // An object is one request: its size and age limits are the batch limits.
  delivery: { batch: { max_bytes: DEFAULT_OBJECT_BYTES, max_records: 10_000_000, flush_interval: DEFAULT_OBJECT_AGE_MS }, concurrency: 1, request_timeout: 300_000 },
  deliveryFor: (cfg) => ({ batch: { max_bytes: cfg.max_object_bytes, flush_interval: cfg.max_object_age } }),
  create: (cfg, ctx) => new S3Output(cfg, ctx),
  probe: async (cfg, ctx) => [await probeBucket(cfg, ctx)],
};

/** HeadBucket, signed by the same client and credential chain the output uploads with. */
/** The S3 client of an output's config: its own region, else the AWS SDK's environment variables. */
function regionOf(cfg: S3OutputConfig): string {
  return cfg.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1');
}

/** Also what `ktrail verify` reads the bucket back with: the same endpoint, addressing, TLS and credentials as the uploads. */
export async function clientFor(cfg: S3OutputConfig, log: OutputContext['log']): Promise<S3Client> {
  return S3Client.create({
    bucket: cfg.bucket,
    region: regionOf(cfg),
    endpoint: cfg.endpoint,
    forcePathStyle: cfg.force_path_style,
    credentials: await credentialProvider(cfg),
    tls: cfg.tls,
    log,
  });
}

async function probeBucket(cfg: S3OutputConfig, ctx: ProbeContext): Promise<ProbeResult> {
  const region = regionOf(cfg);
  let client: S3Client;
  try {
    client = await clientFor(cfg, ctx.log);
    client.start();
  } catch (err) {
    return { target: `HeadBucket ${cfg.bucket}`, ok: false, detail: `cannot build the client: ${scrubText(errorMessage(err))}` };
  }
  const target = `HeadBucket ${maskUrl(client.bucketUrl)}`;
  const tls = tlsWord(new URL(client.bucketUrl));
  try {
    await client.headBucket(ctx.signal);
    return { target, ok: true, detail: `reachable, ${tls}, credentials accepted (bucket ${cfg.bucket} exists, region ${region})` };
  } catch (err) {
    if (!(err instanceof S3Error)) return { target, ok: false, detail: describeTransportError(err) };
    // A HEAD answer has no body: then the status is all S3 said.
    const said = [err.code === `HTTP${err.status}` ? '' : err.code, err.message === 'no details' ? '' : err.message].filter((x) => x !== '').join(': ');
    const detail = scrubText(said).slice(0, 200);
    const paren = (status: number) => `(HTTP ${status}${detail ? ` ${detail}` : ''})`;
    if (err.status === 0) return { target, ok: false, detail: `no usable AWS credentials: ${detail || err.code}` };
    if (err.status === 403) return { target, ok: false, detail: `reachable, ${tls}, credentials rejected or not allowed to use the bucket ${paren(403)}` };
    if (err.status === 404) return { target, ok: false, detail: `reachable, ${tls}, credentials accepted, but bucket ${cfg.bucket} does not exist (HTTP 404)` };
    if (err.status === 301) return { target, ok: false, detail: `reachable, ${tls}, but the bucket is in another region than ${region} (HTTP 301); set region` };
    return { target, ok: false, detail: `reachable, ${tls}, but HeadBucket answered ${paren(err.status)}` };
  } finally {
    await client.close();
  }
}
