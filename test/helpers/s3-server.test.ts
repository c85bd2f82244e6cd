import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import fs from 'node:fs';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { decodeAwsChunked, startS3Server, type S3TestServer } from './s3-server.ts';

const BUCKET = 'audit';
let s3: S3TestServer;

beforeAll(async () => {
  s3 = await startS3Server({ buckets: [BUCKET, 'events'] });
});

afterAll(async () => {
  await s3?.stop();
});

beforeEach(() => {
  s3.proxy.clearFaults();
  s3.proxy.clearRequests();
});

interface RawReply {
  status: number;
  body: string;
}

function rawRequest(
  endpoint: string,
  req: { method: string; path: string; headers: Record<string, string>; body?: Buffer },
): Promise<RawReply> {
  const url = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const out = http.request(
      { host: url.hostname, port: url.port, method: req.method, path: req.path, headers: req.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    out.on('error', reject);
    out.end(req.body);
  });
}

async function signedPut(endpoint: string, key: string, body: Buffer, secretAccessKey: string = s3.secretAccessKey) {
  const url = new URL(endpoint);
  const signer = new SignatureV4({
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey },
    region: s3.region,
    service: 's3',
    sha256: Sha256,
    uriEscapePath: false,
  });
  const signed = await signer.sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: `/${BUCKET}/${key}`,
    query: {},
    headers: {
      host: url.host,
      'content-type': 'application/x-ndjson',
      'content-length': String(body.length),
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      'x-amz-server-side-encryption': 'AES256',
    },
    body,
  });
  return signed;
}

describe('s3-server', () => {
  it('runs s3rver as a separate process with the requested buckets', async () => {
    expect(s3.pid).toBeGreaterThan(0);
    expect(s3.pid).not.toBe(process.pid);
    expect(() => process.kill(s3.pid, 0)).not.toThrow();
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(s3.proxyEndpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(s3.proxyEndpoint).not.toBe(s3.endpoint);
    expect(fs.readdirSync(s3.dir).sort()).toEqual([BUCKET, 'events']);
    expect(await s3.listKeys('events')).toEqual([]);
  });

  it('puts and reads back objects, with metadata that s3rver keeps', async () => {
    const client = s3.client();
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'a/1.json', Body: '{"x":1}\n', ContentType: 'application/x-ndjson' }));
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'a/2.json', Body: '{"x":2}\n' }));
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'b/3.json', Body: '{"x":3}\n' }));
    expect(await s3.listKeys(BUCKET, 'a/')).toEqual(['a/1.json', 'a/2.json']);
    expect((await s3.getObjectBytes(BUCKET, 'a/1.json')).toString()).toBe('{"x":1}\n');
    const head = await s3.headObject(BUCKET, 'a/1.json');
    expect(head).toMatchObject({ contentLength: 8, contentType: 'application/x-ndjson' });
  });

  it('round-trips a gzip object with its Content-Encoding and storage class', async () => {
    const text = Array.from({ length: 100 }, (_, i) => JSON.stringify({ i })).join('\n') + '\n';
    await s3.client({ viaProxy: true }).send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: 'gz/batch-1.ndjson.gz',
        Body: zlib.gzipSync(text, { level: 1 }),
        ContentEncoding: 'gzip',
        ContentType: 'application/x-ndjson',
        StorageClass: 'STANDARD_IA',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: 'alias/ktrail',
      }),
    );
    expect(await s3.getObjectGunzipped(BUCKET, 'gz/batch-1.ndjson.gz')).toBe(text);
    const head = await s3.headObject(BUCKET, 'gz/batch-1.ndjson.gz');
    expect(head.contentEncoding).toBe('gzip');
    expect(head.storageClass).toBe('STANDARD_IA');
    const put = s3.proxy.requests.find((r) => r.operation === 'PutObject');
    expect(put?.headers['x-amz-server-side-encryption']).toBe('aws:kms');
    expect(put?.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe('alias/ktrail');
    expect(put?.headers['x-amz-storage-class']).toBe('STANDARD_IA');
    expect(put?.headers['content-encoding']).toBe('gzip');
    expect(put?.hasAuthorization).toBe(true);
    expect(put?.signature).toBe('valid');
  });

  it('verifies signatures for keys and query strings that need escaping', async () => {
    const client = s3.client({ viaProxy: true, config: { maxAttempts: 1 } });
    const key = "esc/node=ip-10-0-0-1/audit log (1)+ü*'!.json";
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'e' }));
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'esc/node=ip-10-0-0-1/audit log', MaxKeys: 5 }));
    expect(listed.Contents?.map((c) => c.Key)).toEqual([key]);
    expect(s3.proxy.requests.map((r) => [r.operation, r.signature, r.status])).toEqual([
      ['PutObject', 'valid', 200],
      ['ListObjectsV2', 'valid', 200],
    ]);
    expect(s3.proxy.requests[0]?.key).toBe(key);
  });

  it('decodes aws-chunked streaming uploads (SDK default checksums) at the proxy, like S3 does', async () => {
    const payload = Buffer.from('streamed line\n'.repeat(1000));
    await s3.client({ viaProxy: true }).send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'stream/1', Body: Readable.from([payload]), ContentLength: payload.length }),
    );
    expect((await s3.getObjectBytes(BUCKET, 'stream/1')).equals(payload)).toBe(true);
    const put = s3.proxy.requests.find((r) => r.operation === 'PutObject');
    expect(put?.headers['content-encoding']).toContain('aws-chunked');
    expect(put?.payloadBytes).toBe(payload.length);
    expect(put?.trailers['x-amz-checksum-crc32']).toBeDefined();
    expect(decodeAwsChunked(Buffer.from('3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n'))).toEqual({
      data: Buffer.from('abc'),
      trailers: { 'x-amz-checksum-crc32': 'NSRBwg==' },
    });
  });

  it('completes an ~11 MiB multipart upload through the proxy', async () => {
    const client = s3.client({ viaProxy: true });
    const key = 'mpu/big.ndjson.gz';
    const partBytes = 5 * 1024 * 1024;
    const whole = Buffer.alloc(11 * 1024 * 1024);
    for (let i = 0; i < whole.length; i += 4096) whole.writeUInt32BE(i, i);
    const created = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ContentEncoding: 'gzip', ContentType: 'application/x-ndjson' }));
    const parts: { ETag: string; PartNumber: number }[] = [];
    for (let n = 1, off = 0; off < whole.length; n++, off += partBytes) {
      const out = await client.send(
        new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: n, Body: whole.subarray(off, off + partBytes) }),
      );
      parts.push({ ETag: out.ETag ?? '', PartNumber: n });
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, MultipartUpload: { Parts: parts } }));
    expect(parts).toHaveLength(3);
    expect((await s3.getObjectBytes(BUCKET, key)).equals(whole)).toBe(true);
    expect((await s3.headObject(BUCKET, key)).contentEncoding).toBe('gzip');
    expect(s3.proxy.requests.map((r) => r.operation)).toEqual([
      'CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload',
    ]);
    expect(s3.proxy.requests.every((r) => r.signature === 'valid' && r.status === 200)).toBe(true);
  });

  it('injects 500/503 failures by operation and records them; the SDK retries through them', async () => {
    const fault = s3.proxy.failNext(2, 503, { operation: 'PutObject' });
    const client = s3.client({ viaProxy: true, config: { maxAttempts: 3 } });
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'retry/1', Body: 'ok' }));
    expect(fault.hits).toBe(2);
    expect(s3.proxy.requests.map((r) => [r.status, r.outcome])).toEqual([
      [503, 'injected-failure'], [503, 'injected-failure'], [200, 'forwarded'],
    ]);
    expect((await s3.getObjectBytes(BUCKET, 'retry/1')).toString()).toBe('ok');

    s3.proxy.failNext(1, 500, { method: 'PUT', pathRegex: /retry\/2/ });
    const once = s3.client({ viaProxy: true, config: { maxAttempts: 1 } });
    await expect(once.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'retry/2', Body: 'x' }))).rejects.toMatchObject({
      name: 'InternalError',
      $metadata: { httpStatusCode: 500 },
    });
    expect(await s3.listKeys(BUCKET, 'retry/')).toEqual(['retry/1']);
  });

  it('resets connections before or after forwarding', async () => {
    const client = s3.client({ viaProxy: true, config: { maxAttempts: 1 } });
    s3.proxy.resetNext(1, { operation: 'PutObject' });
    await expect(client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'reset/before', Body: 'x' }))).rejects.toThrow();
    expect(await s3.listKeys(BUCKET, 'reset/')).toEqual([]);
    s3.proxy.resetNext(1, { operation: 'PutObject', afterForwarding: true });
    await expect(client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'reset/after', Body: 'y' }))).rejects.toThrow();
    expect(await s3.listKeys(BUCKET, 'reset/')).toEqual(['reset/after']);
    expect(s3.proxy.requests.map((r) => r.outcome)).toEqual(['reset', 'reset']);
  });

  it('accepts a request signed by @smithy/signature-v4 and rejects a bad signature at the proxy', async () => {
    const body = Buffer.from('{"signed":true}\n');
    for (const endpoint of [s3.endpoint, s3.proxyEndpoint]) {
      const signed = await signedPut(endpoint, 'signed/ok', body);
      const reply = await rawRequest(endpoint, { method: 'PUT', path: signed.path, headers: signed.headers as Record<string, string>, body });
      expect(reply.status).toBe(200);
    }
    expect(s3.proxy.requests.at(-1)).toMatchObject({ signature: 'valid', operation: 'PutObject' });
    expect(s3.proxy.requests.at(-1)?.headers['x-amz-server-side-encryption']).toBe('AES256');
    expect((await s3.getObjectBytes(BUCKET, 'signed/ok')).equals(body)).toBe(true);

    const wrongKey = await signedPut(s3.proxyEndpoint, 'signed/bad', body, 'not-the-secret');
    const rejected = await rawRequest(s3.proxyEndpoint, { method: 'PUT', path: wrongKey.path, headers: wrongKey.headers as Record<string, string>, body });
    expect(rejected.status).toBe(403);
    expect(rejected.body).toContain('<Code>SignatureDoesNotMatch</Code>');

    const good = await signedPut(s3.proxyEndpoint, 'signed/tampered', body);
    const tampered = { ...(good.headers as Record<string, string>), 'x-amz-server-side-encryption': 'aws:kms' };
    expect((await rawRequest(s3.proxyEndpoint, { method: 'PUT', path: good.path, headers: tampered, body })).status).toBe(403);
    expect(await s3.listKeys(BUCKET, 'signed/')).toEqual(['signed/ok']);
  });

  it('rejects a body whose CRC32 checksum does not match', async () => {
    const client = s3.client({ viaProxy: true, config: { maxAttempts: 1 } });
    await expect(
      client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc/bad', Body: 'abc', ChecksumCRC32: 'AAAAAA==' })),
    ).rejects.toMatchObject({ name: 'BadDigest' });
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc/good', Body: 'abc', ChecksumCRC32: 'NSRBwg==' }));
    expect(await s3.listKeys(BUCKET, 'crc/')).toEqual(['crc/good']);
  });

  it('stops the process and removes its directory', async () => {
    const other = await startS3Server({ buckets: ['tmp'] });
    const { pid, dir } = other;
    await other.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(fs.existsSync(dir)).toBe(false);
    await other.stop(); // idempotent
  });
});
