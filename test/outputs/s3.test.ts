import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { senderConfig } from '../../src/pipeline/agent.ts';
import type { Output } from '../../src/plugin.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { BASE_TIME_MS, makeAgent, makeRecords, outbound, outputContext, pendingIds, tempDir, until } from './support/harness.ts';

const BUCKET = 'audit-logs';
let s3: S3TestServer;
beforeAll(async () => {
  s3 = await startS3Server({ buckets: [BUCKET, 'other'] });
});
afterAll(async () => {
  await s3?.stop();
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  s3.proxy.clearFaults();
  s3.proxy.clearRequests();
});

function base(bucket = BUCKET): string {
  return `type: s3\nbucket: ${bucket}\nendpoint: ${s3.proxyEndpoint}\nforce_path_style: true\naccess_key_id: ${s3.accessKeyId}\nsecret_access_key: ${s3.secretAccessKey}`;
}

function loadOutput(yamlOutput: string, dir: string) {
  const cfg = loadConfigText(
    `service: { state_dir: ${dir}, node_name: node-a }\ninputs: { gen: { type: fake } }\noutputs:\n  s3out:\n${yamlOutput.replace(/^/gm, '    ')}`,
    'test.yaml',
    { extraPlugins: [fakeInputPlugin()] },
  );
  return cfg.outputs[0]!;
}

async function createOutput(yamlOutput: string): Promise<{ output: Output; dir: string }> {
  const dir = tempDir(cleanups);
  const oc = loadOutput(yamlOutput, dir);
  const { ctx, spool } = outputContext(dir, 's3out', 's3', 'node-a');
  cleanups.push(() => spool.close());
  const output = oc.plugin.create(oc.config, ctx);
  await output.start?.();
  cleanups.push(() => output.close?.());
  return { output, dir };
}

const signal = () => AbortSignal.timeout(30_000);
const ndjson = (recs: Array<{ json: string }>) => recs.map((r) => `${r.json}\n`).join('');

async function newKeys(before: readonly string[], bucket = BUCKET): Promise<string[]> {
  const now = await s3.listKeys(bucket);
  return now.filter((k) => !before.includes(k));
}

describe('s3 output: objects', () => {
  it('PutObject of gzipped NDJSON under the default key, with content headers, SSE and storage class; signed with SigV4', async () => {
    const before = await s3.listKeys(BUCKET);
    const { output } = await createOutput(`${base()}\nstorage_class: STANDARD_IA\nsse: aws:kms\nkms_key_id: alias/audit`);
    const recs = makeRecords(50);
    expect(await output.send(outbound(recs, 's3out-7-9'), signal())).toEqual({ kind: 'ok' });
    const keys = await newKeys(before);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^ktrail\/audit\/2025\/01\/02\/03\/node-a-[0-9a-f]{8}-s3out-7-9\.ndjson\.gz$/);
    expect(await s3.getObjectGunzipped(BUCKET, keys[0]!)).toBe(ndjson(recs));
    const head = await s3.headObject(BUCKET, keys[0]!);
    expect(head.contentType).toBe('application/x-ndjson');
    expect(head.contentEncoding).toBe('gzip');
    const put = s3.proxy.requests.find((r) => r.operation === 'PutObject')!;
    expect(put.signature).toBe('valid');
    expect(put.headers['x-amz-storage-class']).toBe('STANDARD_IA');
    expect(put.headers['x-amz-server-side-encryption']).toBe('aws:kms');
    expect(put.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe('alias/audit');
  });

  it('SSE-S3 (AES256); key partitions from the first record time (UTC); {input} writes one object per input', async () => {
    const before = await s3.listKeys(BUCKET);
    const { output } = await createOutput(`${base()}\nsse: AES256\nkey_format: "p/{input}/dt=%Y-%m-%d/hour=%H/min=%M/{node}-{batch}.gz"`);
    const t = Date.UTC(2025, 5, 30, 23, 59, 30);
    const a = makeRecords(3, { input: 'audit', timeMs: (i) => t + i * 1000 });
    const b = makeRecords(2, { from: 3, input: 'events', timeMs: (i) => t + 60_000 + i });
    expect((await output.send(outbound([a[0]!, b[0]!, a[1]!, b[1]!, a[2]!], 's3out-1-2'), signal())).kind).toBe('ok');
    const keys = await newKeys(before);
    expect(keys.sort()).toEqual([
      'p/audit/dt=2025-06-30/hour=23/min=59/node-a-s3out-1-2.gz',
      'p/events/dt=2025-07-01/hour=00/min=00/node-a-s3out-1-2.gz',
    ]);
    expect(await s3.getObjectGunzipped(BUCKET, keys.find((k) => k.includes('/audit/'))!)).toBe(ndjson(a));
    expect(await s3.getObjectGunzipped(BUCKET, keys.find((k) => k.includes('/events/'))!)).toBe(ndjson(b));
    const puts = s3.proxy.requests.filter((r) => r.operation === 'PutObject');
    expect(puts.every((p) => p.headers['x-amz-server-side-encryption'] === 'AES256' && p.headers['x-amz-storage-class'] === undefined)).toBe(true);
  });

  it('objects above multipart_threshold go up in parts of multipart_part_bytes and read back whole', async () => {
    const before = await s3.listKeys(BUCKET);
    const { output } = await createOutput(`${base()}\nkey_format: "mp/{batch}.ndjson.gz"\nmultipart_threshold: 5MiB\nmultipart_part_bytes: 5MiB`);
    // Random hex compresses to about half: ~13 MiB of gzip from 26 MiB of records.
    const recs = Array.from({ length: 400 }, (_, i) => ({ id: `big-${i}`, timeMs: BASE_TIME_MS, input: 'audit', json: JSON.stringify({ i, blob: randomBytes(32 * 1024).toString('hex') }) }));
    expect((await output.send(outbound(recs, 's3out-big'), signal())).kind).toBe('ok');
    expect(await newKeys(before)).toEqual(['mp/s3out-big.ndjson.gz']);
    const ops = s3.proxy.requests.map((r) => r.operation);
    expect(ops.filter((o) => o === 'CreateMultipartUpload')).toHaveLength(1);
    expect(ops.filter((o) => o === 'UploadPart').length).toBe(3);
    expect(ops.filter((o) => o === 'CompleteMultipartUpload')).toHaveLength(1);
    expect(ops).not.toContain('PutObject');
    const parts = s3.proxy.requests.filter((r) => r.operation === 'UploadPart');
    expect(parts.slice(0, -1).every((p) => p.payloadBytes === 5 * 1024 * 1024)).toBe(true);
    const create = s3.proxy.requests.find((r) => r.operation === 'CreateMultipartUpload')!;
    expect(create.headers['content-encoding']).toBe('gzip');
    expect(s3.proxy.requests.every((r) => r.signature === 'valid')).toBe(true);
    expect(await s3.getObjectGunzipped(BUCKET, 'mp/s3out-big.ndjson.gz')).toBe(ndjson(recs));
  });

  it('a permanent failure during a multipart upload aborts it', async () => {
    const { output } = await createOutput(`${base()}\nkey_format: "abort/{batch}.gz"\nmultipart_threshold: 1\nmultipart_part_bytes: 5MiB`);
    s3.proxy.failNext(1, 400, { operation: 'CompleteMultipartUpload' });
    const outcome = await output.send(outbound(makeRecords(10)), signal());
    expect(outcome.kind).toBe('permanent');
    const ops = s3.proxy.requests.map((r) => r.operation);
    expect(ops).toEqual(['CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'AbortMultipartUpload']);
    expect(await s3.listKeys(BUCKET, 'abort/')).toEqual([]);
  });
});

describe('s3 output: classification', () => {
  it('5xx/SlowDown, network, 403 (credentials), NoSuchBucket are retryable; other 4xx permanent', async () => {
    const { output } = await createOutput(`${base()}\nkey_format: "cls/{batch}.gz"`);
    s3.proxy.failNext(1, 503);
    const slow = await output.send(outbound(makeRecords(1)), signal());
    expect(slow.kind === 'retryable' && slow.detail).toContain('HTTP 503 SlowDown');
    s3.proxy.failNext(1, 500);
    expect((await output.send(outbound(makeRecords(1)), signal())).kind).toBe('retryable');
    s3.proxy.resetNext(1);
    const reset = await output.send(outbound(makeRecords(1)), signal());
    expect(reset.kind === 'retryable' && reset.detail).toMatch(/^network /);
    s3.proxy.failNext(1, 403);
    expect((await output.send(outbound(makeRecords(1)), signal())).kind).toBe('retryable');
    s3.proxy.failNext(1, 400);
    expect((await output.send(outbound(makeRecords(1)), signal())).kind).toBe('permanent');
    const missing = await createOutput(`${base('no-such-bucket')}`);
    const nb = await missing.output.send(outbound(makeRecords(1)), signal());
    expect(nb.kind === 'retryable' && nb.detail).toContain('NoSuchBucket');
  });

  it('wrong secret key → SignatureDoesNotMatch 403 → retryable (credentials may be rotated)', async () => {
    const { output } = await createOutput(`${base().replace(/secret_access_key: .*/, 'secret_access_key: wrong')}`);
    const o = await output.send(outbound(makeRecords(1)), signal());
    expect(o.kind === 'retryable' && o.detail).toContain('HTTP 403 SignatureDoesNotMatch');
  });

  it('credentials come from the AWS provider chain (environment) when none are configured', async () => {
    const saved = { ...process.env };
    process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    cleanups.push(() => {
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_EC2_METADATA_DISABLED']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    });
    const { output } = await createOutput(`type: s3\nbucket: ${BUCKET}\nendpoint: ${s3.proxyEndpoint}\nforce_path_style: true\nregion: us-east-1\nkey_format: "chain/{batch}.gz"`);
    expect((await output.send(outbound(makeRecords(2)), signal())).kind).toBe('ok');
    expect(s3.proxy.requests.at(-1)!.signature).toBe('valid');
  });
});

describe('s3 output: config', () => {
  const load = (out: string) =>
    loadConfigText(`inputs: { gen: { type: fake } }\noutputs:\n  s3:\n${out.replace(/^/gm, '    ')}`, 't.yaml', { extraPlugins: [fakeInputPlugin()] });
  it('rejects key formats without {batch}, unknown tokens, half credentials, kms key without kms', () => {
    expect(() => load('type: s3\nbucket: abc\nkey_format: "x/%Y/{node}.gz"')).toThrow(/must contain \{batch\}/);
    expect(() => load('type: s3\nbucket: abc\nkey_format: "x/%S/{batch}"')).toThrow(/unknown time token/);
    expect(() => load('type: s3\nbucket: abc\nkey_format: "x/{pod}/{batch}"')).toThrow(/unknown placeholder/);
    expect(() => load('type: s3\nbucket: abc\naccess_key_id: a')).toThrow(/go together/);
    expect(() => load('type: s3\nbucket: abc\nkms_key_id: k')).toThrow(/needs sse: aws:kms/);
    expect(() => load('type: s3\nbucket: abc\nmultipart_part_bytes: 1MiB')).toThrow(/at least 5MiB/);
  });
  it('max_object_bytes / max_object_age become the sender batch size and flush interval; batch.* still wins', () => {
    const oc = load('type: s3\nbucket: abc\nmax_object_bytes: 8MiB\nmax_object_age: 2m').outputs[0]!;
    expect(senderConfig(oc)).toMatchObject({ maxBatchBytes: 8 * 1024 * 1024, flushIntervalMs: 120_000, concurrency: 1 });
    const dflt = load('type: s3\nbucket: abc').outputs[0]!;
    expect(senderConfig(dflt)).toMatchObject({ maxBatchBytes: 32 * 1024 * 1024, flushIntervalMs: 60_000 });
    const explicit = load('type: s3\nbucket: abc\nmax_object_bytes: 8MiB\nbatch: { max_bytes: 1MiB }').outputs[0]!;
    expect(senderConfig(explicit).maxBatchBytes).toBe(1024 * 1024);
  });
});

describe('s3 output in the agent', () => {
  function yaml(dir: string, prefix: string, total: number, extra = '') {
    return `
service: { state_dir: ${dir}, node_name: node-a, shutdown_timeout: 5s, metrics: { enabled: false } }
inputs: { gen: { type: fake, total: ${total}, batch: 25 } }
outputs:
  s3out:
${base().replace(/^/gm, '    ')}
    key_format: "${prefix}/{node}-{batch}.ndjson.gz"
    retry: { initial_backoff: 5ms, max_backoff: 20ms }
${extra.replace(/^/gm, '    ')}`;
  }

  async function readAll(prefix: string): Promise<{ keys: string[]; seqs: number[] }> {
    const keys = await s3.listKeys(BUCKET, `${prefix}/`);
    const seqs: number[] = [];
    for (const k of keys) {
      for (const line of (await s3.getObjectGunzipped(BUCKET, k)).split('\n')) if (line) seqs.push((JSON.parse(line) as { seq: number }).seq);
    }
    return { keys, seqs };
  }

  it('objects roll by max_object_bytes; every record lands exactly once', async () => {
    const dir = tempDir(cleanups);
    const { agent } = makeAgent(yaml(dir, 'roll', 200, 'max_object_bytes: 2KiB\nmax_object_age: 100ms'));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(async () => (await readAll('roll')).seqs.length === 200 && agent.spool.records === 0);
    await agent.stop();
    const { keys, seqs } = await readAll('roll');
    expect(keys.length).toBeGreaterThan(5);
    expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('a failed upload is retried under the same key: no duplicate object, even when the first attempt was stored but its answer lost', async () => {
    const dir = tempDir(cleanups);
    s3.proxy.failNext(2, 503, { operation: 'PutObject' });
    // The third PutObject reaches s3rver, then the connection drops: the object exists, the agent does not know.
    s3.proxy.resetNext(1, { operation: 'PutObject', afterForwarding: true });
    const { agent } = makeAgent(yaml(dir, 'retry', 100, 'max_object_age: 100ms'));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(async () => agent.spool.records === 0 && (await readAll('retry')).seqs.length === 100);
    await agent.stop();
    const puts = s3.proxy.requests.filter((r) => r.operation === 'PutObject');
    const { keys, seqs } = await readAll('retry');
    expect(puts.length).toBeGreaterThan(keys.length);
    expect(new Set(puts.map((p) => p.key))).toEqual(new Set(keys));
    expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(pendingIds(dir, 's3out')).toEqual([]);
  });
});
