import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Client, S3Error } from '../../src/outputs/s3/s3-client.ts';
import { createLogger } from '../../src/telemetry/logger.ts';

/**
 * The reads `ktrail verify` makes with the output's client, against a bare
 * HTTP server: ListObjectsV2 follows continuation tokens and unescapes keys;
 * GetObject returns the stored bytes untouched and its ETag, and a 404 is an
 * S3Error with S3's code.
 */

const seen: string[] = [];
let server: http.Server;
let endpoint: string;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.url!);
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/bkt' && url.searchParams.get('list-type') === '2') {
      const page2 = url.searchParams.get('continuation-token') === 'tok&1';
      const keys = page2 ? ['p/c.json'] : ['p/a&amp;b.json', 'p/b.json'];
      res.setHeader('content-type', 'application/xml');
      res.end(
        `<?xml version="1.0"?><ListBucketResult><Name>bkt</Name><IsTruncated>${page2 ? 'false' : 'true'}</IsTruncated>${page2 ? '' : '<NextContinuationToken>tok&amp;1</NextContinuationToken>'}` +
          keys.map((k) => `<Contents><Key>${k}</Key><ETag>"e"</ETag><Size>1</Size></Contents>`).join('') +
          '</ListBucketResult>',
      );
      return;
    }
    if (url.pathname === '/bkt/p/obj.gz') {
      res.writeHead(200, { etag: '"abc"', 'content-encoding': 'gzip', 'content-length': '4' });
      res.end(Buffer.from([0x1f, 0x8b, 0x00, 0xff]));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/xml' });
    res.end('<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('S3Client reads (ktrail verify)', () => {
  it('lists every page, gets bytes as stored with the ETag, and reports a missing key as NoSuchKey', async () => {
    const client = await S3Client.create({
      bucket: 'bkt',
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      credentials: async () => ({ accessKeyId: 'AK', secretAccessKey: 'SK' }),
      tls: undefined,
      log: createLogger('silent'),
    });
    const signal = new AbortController().signal;
    try {
      const p1 = await client.listObjects('p/', undefined, signal);
      expect(p1).toEqual({ keys: ['p/a&b.json', 'p/b.json'], nextToken: 'tok&1' });
      const p2 = await client.listObjects('p/', p1.nextToken, signal);
      expect(p2).toEqual({ keys: ['p/c.json'], nextToken: undefined });
      expect(seen.some((u) => u.includes('continuation-token=tok%261') && u.includes('prefix=p%2F'))).toBe(true);

      const got = await client.getObject('p/obj.gz', signal);
      expect([...got.bytes]).toEqual([0x1f, 0x8b, 0x00, 0xff]);
      expect(got.etag).toBe('"abc"');

      const err = await client.getObject('p/gone', signal).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(S3Error);
      expect(err).toMatchObject({ status: 404, code: 'NoSuchKey' });
    } finally {
      await client.close();
    }
  });
});
