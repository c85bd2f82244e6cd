import { afterEach, describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import {
  apiKeyAuthorization,
  basicAuthorization,
  filterPath,
  startEsBulkServer,
  type EsBulkServer,
  type EsBulkServerOptions,
} from './es-bulk-server.ts';

let server: EsBulkServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: EsBulkServerOptions = {}): Promise<EsBulkServer> {
  server = await startEsBulkServer(options);
  return server;
}

function ndjson(lines: readonly unknown[]): string {
  return lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
}

interface BulkReply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function post(
  s: EsBulkServer,
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<BulkReply> {
  const res = await fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', ...headers },
    body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

function bulk(s: EsBulkServer, lines: readonly unknown[], path = '/_bulk', headers: Record<string, string> = {}): Promise<BulkReply> {
  return post(s, path, ndjson(lines), headers);
}

const shards = { total: 2, successful: 1, failed: 0 };

describe('es-bulk-server: GET /', () => {
  it('answers like Elasticsearch 8 with the product header', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-elastic-product')).toBe('Elasticsearch');
    const body = (await res.json()) as any;
    expect(body.tagline).toBe('You Know, for Search');
    expect(body.version.number).toBe('8.15.0');
    expect(body.version.build_flavor).toBe('default');
    expect(typeof body.name).toBe('string');
    expect(typeof body.cluster_name).toBe('string');
  });

  it('answers like OpenSearch 2.x when asked to', async () => {
    const s = await start({ flavor: 'opensearch' });
    const res = await fetch(`${s.url}/`);
    expect(res.headers.get('x-elastic-product')).toBeNull();
    const body = (await res.json()) as any;
    expect(body.version.distribution).toBe('opensearch');
    expect(body.version.number).toMatch(/^2\./);
  });
});

describe('es-bulk-server: _bulk format', () => {
  it('answers each action in Elasticsearch\'s exact shape and stores the documents', async () => {
    const s = await start();
    const res = await bulk(s, [
      { create: { _index: 'logs', _id: 'a' } },
      { msg: 'one' },
      { index: { _index: 'logs', _id: 'b' } },
      { msg: 'two' },
      { delete: { _index: 'logs', _id: 'missing' } },
      { update: { _index: 'logs', _id: 'b' } },
      { doc: { extra: { x: 1 } } },
    ]);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.json).toEqual({
      took: expect.any(Number),
      errors: false,
      items: [
        { create: { _index: 'logs', _id: 'a', _version: 1, result: 'created', _shards: shards, _seq_no: 0, _primary_term: 1, status: 201 } },
        { index: { _index: 'logs', _id: 'b', _version: 1, result: 'created', _shards: shards, _seq_no: 1, _primary_term: 1, status: 201 } },
        { delete: { _index: 'logs', _id: 'missing', _version: 1, result: 'not_found', _shards: shards, _seq_no: 2, _primary_term: 1, status: 404 } },
        { update: { _index: 'logs', _id: 'b', _version: 2, result: 'updated', _shards: shards, _seq_no: 3, _primary_term: 1, status: 200 } },
      ],
    });
    expect(Object.fromEntries(s.docs('logs'))).toEqual({ a: { msg: 'one' }, b: { msg: 'two', extra: { x: 1 } } });
    expect(s.stats).toMatchObject({ requests: 1, bulkRequests: 1, items: 4 });
    expect(s.bulkRequests[0]?.itemCount).toBe(4);
  });

  it('answers 409 version_conflict_engine_exception for a duplicate create and keeps the first document', async () => {
    const s = await start();
    await bulk(s, [{ create: { _index: 'logs', _id: 'dup' } }, { n: 1 }]);
    const res = await bulk(s, [{ create: { _index: 'logs', _id: 'dup' } }, { n: 2 }]);
    expect(res.status).toBe(200);
    expect(res.json.errors).toBe(true);
    const uuid = res.json.items[0].create.error.index_uuid;
    expect(typeof uuid).toBe('string');
    expect(res.json.items).toEqual([
      {
        create: {
          _index: 'logs',
          _id: 'dup',
          status: 409,
          error: {
            type: 'version_conflict_engine_exception',
            reason: '[dup]: version conflict, document already exists (current version [1])',
            index_uuid: uuid,
            shard: '0',
            index: 'logs',
          },
        },
      },
    ]);
    expect(s.docs('logs').get('dup')).toEqual({ n: 1 });
  });

  it('treats index with op_type create as create, and plain index as overwrite', async () => {
    const s = await start();
    await bulk(s, [{ index: { _index: 'i', _id: '1' } }, { v: 1 }]);
    const over = await bulk(s, [{ index: { _index: 'i', _id: '1' } }, { v: 2 }]);
    expect(over.json.items[0].index).toMatchObject({ result: 'updated', status: 200, _version: 2 });
    const opCreate = await bulk(s, [{ index: { _index: 'i', _id: '1', op_type: 'create' } }, { v: 3 }]);
    expect(opCreate.json.items[0].create.status).toBe(409);
    expect(s.docs('i').get('1')).toEqual({ v: 2 });
  });

  it('uses the index from the path and generates a 20-character _id when none is given', async () => {
    const s = await start();
    const res = await bulk(s, [{ create: {} }, { m: 1 }, { create: { _index: 'other' } }, { m: 2 }], '/audit-2024.01.01/_bulk?refresh=false');
    const [first, second] = res.json.items;
    expect(first.create._index).toBe('audit-2024.01.01');
    expect(first.create._id).toMatch(/^[A-Za-z0-9_-]{20}$/);
    expect(second.create._index).toBe('other');
    expect(s.docCount('audit-2024.01.01')).toBe(1);
    expect(s.allDocs().map((d) => d.index).sort()).toEqual(['audit-2024.01.01', 'other']);
    expect(s.bulkRequests[0]?.query).toEqual({ refresh: 'false' });
  });

  it('accepts gzip request bodies and records the raw compressed bytes', async () => {
    const s = await start();
    const text = ndjson([{ create: { _index: 'z', _id: 'g1' } }, { big: 'x'.repeat(1000) }]);
    const gz = zlib.gzipSync(text);
    const res = await post(s, '/_bulk', gz, { 'content-encoding': 'gzip' });
    expect(res.json.items[0].create.status).toBe(201);
    const rec = s.bulkRequests[0];
    expect(rec?.rawBody.equals(gz)).toBe(true);
    expect(rec?.body).toBe(text);
    expect(rec?.headers['content-encoding']).toBe('gzip');
    expect(s.stats.bytesReceived).toBe(gz.length);
  });

  it('gzips responses when enabled and the client accepts gzip', async () => {
    const s = await start({ gzipResponses: true });
    // fetch decompresses transparently; the header shows what came over the wire.
    const res = await bulk(s, [{ create: { _index: 'z', _id: '1' } }, { a: 1 }], '/_bulk', { 'accept-encoding': 'gzip' });
    expect(res.headers.get('content-encoding')).toBe('gzip');
    expect(res.json.items[0].create.status).toBe(201);
  });

  it('handles update upserts, noops and missing documents like Elasticsearch', async () => {
    const s = await start();
    const res = await bulk(s, [
      { update: { _index: 'u', _id: 'x' } },
      { doc: { a: 1 } },
      { update: { _index: 'u', _id: 'x' } },
      { doc: { a: 1 }, doc_as_upsert: true },
      { update: { _index: 'u', _id: 'x' } },
      { doc: { a: 1 }, doc_as_upsert: true },
      { update: { _index: 'u', _id: 'x' } },
      { doc: { b: 2 } },
      { delete: { _index: 'u', _id: 'x' } },
    ]);
    const [missing, upsert, noop, updated, deleted] = res.json.items;
    expect(missing.update).toMatchObject({ status: 404, error: { type: 'document_missing_exception', reason: '[x]: document missing', shard: '0', index: 'u' } });
    expect(upsert.update).toMatchObject({ status: 201, result: 'created', _version: 1 });
    expect(noop.update).toMatchObject({ status: 200, result: 'noop', _version: 1 });
    expect(updated.update).toMatchObject({ status: 200, result: 'updated', _version: 2 });
    expect(deleted.delete).toMatchObject({ status: 200, result: 'deleted', _version: 3 });
    expect(s.docCount('u')).toBe(0);
  });

  it('rejects invalid index names and unparsable sources per item', async () => {
    const s = await start();
    const body =
      JSON.stringify({ create: { _index: 'Upper', _id: '1' } }) + '\n{"a":1}\n' +
      JSON.stringify({ create: { _index: 'ok', _id: '2' } }) + '\n{not json\n' +
      JSON.stringify({ create: { _index: 'ok', _id: '3' } }) + '\n{"a":3}\n';
    const res = await post(s, '/_bulk', body);
    expect(res.status).toBe(200);
    expect(res.json.errors).toBe(true);
    expect(res.json.items[0].create).toMatchObject({ status: 400, error: { type: 'invalid_index_name_exception' } });
    expect(res.json.items[1].create).toMatchObject({ status: 400, error: { type: 'document_parsing_exception' } });
    expect(res.json.items[2].create.status).toBe(201);
    expect([...s.docs('ok').keys()]).toEqual(['3']);
  });

  it('rejects malformed requests as a whole with Elasticsearch error bodies', async () => {
    const s = await start();
    const noNewline = await post(s, '/_bulk', JSON.stringify({ create: { _index: 'a' } }) + '\n{"a":1}');
    expect(noNewline.status).toBe(400);
    expect(noNewline.json).toEqual({
      error: {
        root_cause: [{ type: 'illegal_argument_exception', reason: 'The bulk request must be terminated by a newline [\\n]' }],
        type: 'illegal_argument_exception',
        reason: 'The bulk request must be terminated by a newline [\\n]',
      },
      status: 400,
    });
    const unknown = await bulk(s, [{ upsert: { _index: 'a' } }, {}]);
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.reason).toContain('expected field [create], [delete], [index] or [update] but found [upsert]');
    const noIndex = await bulk(s, [{ create: {} }, { a: 1 }]);
    expect(noIndex.json.error).toMatchObject({ type: 'action_request_validation_exception', reason: 'Validation Failed: 1: index is missing;' });
    const empty = await post(s, '/_bulk', '');
    expect(empty.json.error.reason).toBe('Validation Failed: 1: no requests added;');
    const typeParam = await bulk(s, [{ create: { _index: 'a', _type: '_doc' } }, { a: 1 }]);
    expect(typeParam.json.error.reason).toContain('unknown parameter [_type]');
    const badType = await post(s, '/_bulk', ndjson([{ create: { _index: 'a' } }, { a: 1 }]), { 'content-type': 'text/plain' });
    expect(badType.status).toBe(406);
    expect(badType.json).toEqual({ error: 'Content-Type header [text/plain] is not supported', status: 406 });
    expect(s.docCount()).toBe(0);
  });

  it('applies filter_path to the response', async () => {
    const s = await start();
    await bulk(s, [{ create: { _index: 'f', _id: '1' } }, { a: 1 }]);
    const res = await bulk(s, [{ create: { _index: 'f', _id: '1' } }, { a: 1 }, { create: { _index: 'f', _id: '2' } }, { a: 2 }], '/_bulk?filter_path=errors,items.*.status,items.*.error.type');
    expect(res.json).toEqual({
      errors: true,
      items: [{ create: { status: 409, error: { type: 'version_conflict_engine_exception' } } }, { create: { status: 201 } }],
    });
    expect(filterPath({ a: { b: 1, c: 2 } }, '**.c')).toEqual({ a: { c: 2 } });
  });
});

describe('es-bulk-server: data streams', () => {
  it('allows only create, requires @timestamp and answers with the backing index', async () => {
    const s = await start({ dataStreams: ['logs-k8s-audit'] });
    const res = await bulk(s, [
      { index: { _index: 'logs-k8s-audit' } },
      { '@timestamp': '2024-01-01T00:00:00Z' },
      { create: { _index: 'logs-k8s-audit', _id: 'c1' } },
      { '@timestamp': '2024-01-01T00:00:00Z', m: 1 },
      { create: { _index: 'logs-k8s-audit', _id: 'c2' } },
      { m: 2 },
    ]);
    const [indexOp, created, noTimestamp] = res.json.items;
    expect(indexOp).toEqual({
      index: {
        _index: expect.stringMatching(/^\.ds-logs-k8s-audit-\d{4}\.\d{2}\.\d{2}-000001$/),
        _id: null,
        status: 400,
        error: { type: 'illegal_argument_exception', reason: 'only write ops with an op_type of create are allowed in data streams' },
      },
    });
    expect(created.create).toMatchObject({ _id: 'c1', status: 201, result: 'created' });
    expect(created.create._index).toMatch(/^\.ds-logs-k8s-audit-/);
    expect(noTimestamp.create).toMatchObject({ status: 400, error: { type: 'document_parsing_exception' } });
    expect(noTimestamp.create.error.reason).toContain('data stream timestamp field [@timestamp] is missing');
    expect([...s.docs('logs-k8s-audit').keys()]).toEqual(['c1']);
  });
});

describe('es-bulk-server: item fault injection', () => {
  it('fails listed ids the given number of times with an es_rejected_execution_exception, then accepts them', async () => {
    const s = await start();
    const fault = s.failItems({ ids: ['b', 'c'], times: 2, status: 429 });
    const lines = [
      { create: { _index: 'l', _id: 'a' } }, { n: 'a' },
      { create: { _index: 'l', _id: 'b' } }, { n: 'b' },
      { create: { _index: 'l', _id: 'c' } }, { n: 'c' },
    ];
    const first = await bulk(s, lines);
    expect(first.json.errors).toBe(true);
    expect(first.json.items.map((i: any) => i.create.status)).toEqual([201, 429, 429]);
    expect(first.json.items[1]).toEqual({
      create: { _index: 'l', _id: 'b', status: 429, error: { type: 'es_rejected_execution_exception', reason: expect.stringContaining('rejected execution') } },
    });
    expect([...s.docs('l').keys()]).toEqual(['a']);
    const second = await bulk(s, lines.slice(2));
    expect(second.json.items.map((i: any) => i.create.status)).toEqual([429, 429]);
    const third = await bulk(s, lines.slice(2));
    expect(third.json.items.map((i: any) => i.create.status)).toEqual([201, 201]);
    expect(third.json.errors).toBe(false);
    expect(fault.hits).toBe(4);
    expect(s.docCount('l')).toBe(3);
    expect(s.stats).toMatchObject({ items: 7, itemsFailed: 4, itemsSucceeded: 3 });
  });

  it('uses a parsing exception for 400 and custom type/reason when given', async () => {
    const s = await start();
    s.failItems({ ids: ['p'], status: 400 });
    s.failItems({ ids: ['q'], status: 400, type: 'mapper_parsing_exception', reason: 'custom reason' });
    s.failItems({ ids: ['r'], status: 503 });
    const res = await bulk(s, [
      { create: { _index: 'm', _id: 'p' } }, { a: 1 },
      { create: { _index: 'm', _id: 'q' } }, { a: 1 },
      { create: { _index: 'm', _id: 'r' } }, { a: 1 },
    ]);
    expect(res.json.items[0].create.error.type).toBe('document_parsing_exception');
    expect(res.json.items[1].create.error).toEqual({ type: 'mapper_parsing_exception', reason: 'custom reason' });
    expect(res.json.items[2].create).toMatchObject({ status: 503, error: { type: 'unavailable_shards_exception', shard: '0', index: 'm' } });
    // Without times, a failure is permanent.
    const again = await bulk(s, [{ create: { _index: 'm', _id: 'p' } }, { a: 1 }]);
    expect(again.json.items[0].create.status).toBe(400);
    expect(s.docCount('m')).toBe(0);
  });

  it('accepts a predicate that decides the failure per item, and can be cancelled', async () => {
    const s = await start();
    const fault = s.failItems((item) => (item.position % 2 === 1 ? { status: 500 } : undefined));
    const res = await bulk(s, [
      { create: { _index: 'p', _id: '0' } }, { a: 0 },
      { create: { _index: 'p', _id: '1' } }, { a: 1 },
      { create: { _index: 'p', _id: '2' } }, { a: 2 },
    ]);
    expect(res.json.items.map((i: any) => i.create.status)).toEqual([201, 500, 201]);
    fault.cancel();
    const after = await bulk(s, [{ create: { _index: 'p', _id: '1' } }, { a: 1 }]);
    expect(after.json.items[0].create.status).toBe(201);
    const counted = s.failItems({ match: (i) => i.index === 'p', times: 1, status: 429 });
    const two = await bulk(s, [{ create: { _index: 'p', _id: '7' } }, { a: 1 }, { create: { _index: 'p', _id: '8' } }, { a: 1 }]);
    expect(two.json.items.map((i: any) => i.create.status)).toEqual([429, 201]);
    expect(counted.hits).toBe(1);
  });
});

describe('es-bulk-server: request fault injection', () => {
  it('answers whole-request 429 with Retry-After and an ES error body, then recovers', async () => {
    const s = await start();
    const fault = s.failRequests({ times: 2, status: 429, retryAfterSeconds: 3 });
    const lines = [{ create: { _index: 'r', _id: '1' } }, { a: 1 }];
    for (let i = 0; i < 2; i++) {
      const res = await bulk(s, lines);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('3');
      expect(res.json).toEqual({
        error: {
          root_cause: [{ type: 'es_rejected_execution_exception', reason: expect.any(String) }],
          type: 'es_rejected_execution_exception',
          reason: expect.any(String),
        },
        status: 429,
      });
    }
    expect(s.docCount()).toBe(0);
    const ok = await bulk(s, lines);
    expect(ok.status).toBe(200);
    expect(fault.hits).toBe(2);
    expect(s.bulkRequests.map((r) => [r.status, r.outcome])).toEqual([[429, 'injected-failure'], [429, 'injected-failure'], [200, 'answered']]);
  });

  it('answers 503 and 500 with their error types, and 413 with an empty body', async () => {
    const s = await start();
    s.failRequests({ status: 503 });
    s.failRequests({ status: 500, type: 'null_pointer_exception', reason: 'boom' });
    s.failRequests({ status: 413 });
    const lines = [{ create: { _index: 'r', _id: '1' } }, { a: 1 }];
    const a = await bulk(s, lines);
    expect(a.status).toBe(503);
    expect(a.json.error.type).toBe('cluster_block_exception');
    const b = await bulk(s, lines);
    expect(b.status).toBe(500);
    expect(b.json.error).toMatchObject({ type: 'null_pointer_exception', reason: 'boom' });
    const c = await bulk(s, lines);
    expect(c.status).toBe(413);
    expect(c.text).toBe('');
  });

  it('rejects bodies over maxContentLengthBytes (decoded size) with 413', async () => {
    const s = await start({ maxContentLengthBytes: 200 });
    const small = await bulk(s, [{ create: { _index: 'x', _id: '1' } }, { a: 1 }]);
    expect(small.status).toBe(200);
    const bigText = ndjson([{ create: { _index: 'x', _id: '2' } }, { a: 'y'.repeat(500) }]);
    const big = await post(s, '/_bulk', zlib.gzipSync(bigText), { 'content-encoding': 'gzip' });
    expect(big.status).toBe(413);
    expect(big.text).toBe('');
    expect(s.docCount('x')).toBe(1);
    s.maxContentLengthBytes = undefined;
    expect((await post(s, '/_bulk', bigText)).status).toBe(200);
  });

  it('destroys the connection without answering; afterProcessing keeps the writes so a retry conflicts', async () => {
    const s = await start();
    const lines = [{ create: { _index: 'd', _id: 'once' } }, { a: 1 }];
    s.resetNext(1);
    await expect(bulk(s, lines)).rejects.toThrow();
    expect(s.docCount('d')).toBe(0);
    s.resetNext(1, { afterProcessing: true });
    await expect(bulk(s, lines)).rejects.toThrow();
    expect(s.docCount('d')).toBe(1);
    const retry = await bulk(s, lines);
    expect(retry.json.items[0].create.status).toBe(409);
    expect(s.bulkRequests.map((r) => r.outcome)).toEqual(['reset', 'reset', 'answered']);
  });

  it('delays answers by delayMs so a client timeout fires first', async () => {
    const s = await start({ delayMs: 5_000 });
    await expect(
      fetch(`${s.url}/`, { signal: AbortSignal.timeout(100) }),
    ).rejects.toThrow();
    expect(s.requests).toHaveLength(1);
    s.delayMs = 0;
  });

  it('goes down (connection refused) and comes back on the same port', async () => {
    const s = await start();
    const url = s.url;
    await s.setDown(true);
    expect(s.down).toBe(true);
    await expect(fetch(`${url}/`)).rejects.toThrow();
    await s.setDown(false);
    expect(s.url).toBe(url);
    expect((await fetch(`${url}/`)).status).toBe(200);
  });
});

describe('es-bulk-server: auth', () => {
  it('answers 401 with the security_exception body when credentials are missing or wrong', async () => {
    const s = await start({ authorization: basicAuthorization('elastic', 'changeme') });
    const lines = [{ create: { _index: 'a', _id: '1' } }, { a: 1 }];
    const missing = await bulk(s, lines);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toContain('Basic realm="security"');
    const reason = 'missing authentication credentials for REST request [/_bulk]';
    expect(missing.json).toEqual({
      error: {
        root_cause: [{ type: 'security_exception', reason, header: { 'WWW-Authenticate': expect.any(Array) } }],
        type: 'security_exception',
        reason,
        header: { 'WWW-Authenticate': expect.any(Array) },
      },
      status: 401,
    });
    const wrong = await bulk(s, lines, '/_bulk', { authorization: basicAuthorization('elastic', 'nope') });
    expect(wrong.json.error.reason).toBe('unable to authenticate user [elastic] for REST request [/_bulk]');
    const root = await fetch(`${s.url}/`);
    expect(root.status).toBe(401);
    const ok = await bulk(s, lines, '/_bulk', { authorization: basicAuthorization('elastic', 'changeme') });
    expect(ok.status).toBe(200);
    expect(s.docCount()).toBe(1);
  });

  it('accepts ApiKey and Bearer values and can rotate them', async () => {
    const apiKey = apiKeyAuthorization('id1', 'secret');
    const s = await start({ authorization: [apiKey, 'Bearer t0k3n'] });
    const lines = [{ index: { _index: 'a', _id: '1' } }, { a: 1 }];
    expect((await bulk(s, lines, '/_bulk', { authorization: apiKey })).status).toBe(200);
    expect((await bulk(s, lines, '/_bulk', { authorization: 'Bearer t0k3n' })).status).toBe(200);
    const bad = await bulk(s, lines, '/_bulk', { authorization: 'ApiKey bm9wZQ==' });
    expect(bad.status).toBe(401);
    expect(bad.json.error.reason).toContain('unable to authenticate with provided credentials');
    s.setAuthorization('Bearer rotated');
    expect((await bulk(s, lines, '/_bulk', { authorization: 'Bearer t0k3n' })).status).toBe(401);
    expect((await bulk(s, lines, '/_bulk', { authorization: 'Bearer rotated' })).status).toBe(200);
    expect(s.bulkRequests.every((r) => r.headers.authorization !== undefined)).toBe(true);
  });
});
