import zlib from 'node:zlib';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { cleanUpScenarios, expectOnlyTheDeletedGap, idsOf, ktrailVerifyAsync, runScenario } from './scenario.ts';

/**
 * `ktrail verify` against the s3 output on a real S3-compatible server
 * (s3rver): manifests are `manifests/…` JSON objects beside the data objects,
 * naming their keys and ETags. After the run it passes with exactly
 * the one gap; a deleted object, an edited record and a removed manifest
 * each make it fail and say so.
 */

cleanUpScenarios();

const BUCKET = 'audit-verify';
let s3: S3TestServer;
beforeAll(async () => {
  s3 = await startS3Server({ buckets: [BUCKET] });
});
afterAll(async () => {
  await s3?.stop();
});

const sink = () =>
  `{ type: s3, bucket: ${BUCKET}, endpoint: "${s3.proxyEndpoint}", force_path_style: true, region: ${s3.region}, access_key_id: ${s3.accessKeyId}, secret_access_key: ${s3.secretAccessKey}, max_object_age: 200ms, batch: { max_records: 200 } }`;

describe('ktrail verify against the s3 output', () => {
  it('after rotations, a deleted-unread backup and 3 SIGKILLs: passes with exactly that gap; fails on a deleted object, an edited record, a removed manifest', async () => {
    const sc = await runScenario(sink);
    const keys = await s3.listKeys(BUCKET);
    const manifests = keys.filter((k) => k.startsWith('ktrail/manifests/')).sort();
    const data = keys.filter((k) => !k.startsWith('ktrail/manifests/')).sort();
    expect(manifests.length).toBeGreaterThanOrEqual(2);
    const atSink = new Set<string>();
    const bodies = new Map<string, Buffer>();
    for (const k of data) {
      bodies.set(k, await s3.getObjectBytes(BUCKET, k));
      for (const id of idsOf(zlib.gunzipSync(bodies.get(k)!).toString('utf8'))) atSink.add(id);
    }
    expect([...atSink].sort()).toEqual([...sc.expectedIds].sort());

    const good = await ktrailVerifyAsync(sc.config);
    expectOnlyTheDeletedGap(good, sc);

    const client = s3.client();
    const put = (key: string, body: Buffer) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentEncoding: 'gzip' }));
    try {
      // One record edited inside its object: fails on that record's hash (and the object's ETag).
      const victimKey = data[Math.floor(data.length / 2)]!;
      const original = bodies.get(victimKey)!;
      const lines = zlib.gunzipSync(original).toString('utf8').split('\n');
      const victimId = idsOf(lines[0]!)[0]!;
      lines[0] = lines[0]!.replace('"verb":"get"', '"verb":"delete"');
      await put(victimKey, zlib.gzipSync(lines.join('\n')));
      const edited = await ktrailVerifyAsync(sc.config);
      expect(edited.status).toBe(1);
      expect(edited.stdout).toContain(`(${victimId}) altered (SHA-256 differs from the manifest; at s3://${BUCKET}/${victimKey} line 1)`);
      expect(edited.stdout).toContain(`object s3://${BUCKET}/${victimKey}: ETag`);
      await put(victimKey, original);

      // One object deleted: fails, naming the object and the records' range.
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: victimKey }));
      const missing = await ktrailVerifyAsync(sc.config);
      expect(missing.status).toBe(1);
      expect(missing.stdout).toMatch(new RegExp(`object s3://${BUCKET}/${victimKey.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(batches \\d+\\.\\.\\d+, \\d+ records\\) is missing`));
      expect(missing.stdout).toMatch(/FAIL audit:\S+ entry #\d+, \S+ bytes \d+\.\.\d+ \(fingerprint [0-9a-f]+\), batch \d+: records? \d+(\.\.\d+)? \(.+\) missing/);
      await put(victimKey, original);
      expect((await ktrailVerifyAsync(sc.config)).status).toBe(0);

      // One manifest removed: fails on the chain.
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: manifests[1]! }));
      const removed = await ktrailVerifyAsync(sc.config);
      expect(removed.status).toBe(1);
      expect(removed.stdout).toContain('manifests #2..#2 are missing');
    } finally {
      client.destroy();
    }
  });
});
