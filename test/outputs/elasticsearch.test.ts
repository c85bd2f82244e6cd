import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { interpretBulkResponse, withTimestamp } from '../../src/outputs/elasticsearch/bulk.ts';
import type { Output } from '../../src/plugin.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { apiKeyAuthorization, basicAuthorization, startEsBulkServer, type EsBulkServer, type EsBulkServerOptions } from '../helpers/es-bulk-server.ts';
import { BASE_TIME_MS, counterValue, deadLetters, makeAgent, makeRecords, outbound, outputContext, pendingIds, tempDir, until } from './support/harness.ts';
import type { Metrics } from '../../src/telemetry/metrics.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function es(opts: EsBulkServerOptions = {}): Promise<EsBulkServer> {
  const s = await startEsBulkServer(opts);
  cleanups.push(() => s.close());
  return s;
}

async function createOutput(yamlOutput: string): Promise<{ output: Output; metrics: Metrics }> {
  const dir = tempDir(cleanups);
  const cfg = loadConfigText(
    `service: { state_dir: ${dir} }\ninputs: { gen: { type: fake } }\noutputs:\n  es:\n${yamlOutput.replace(/^/gm, '    ')}`,
    'test.yaml',
    { extraPlugins: [fakeInputPlugin()] },
  );
  const oc = cfg.outputs[0]!;
  const { ctx, spool, metrics } = outputContext(dir, 'es', 'elasticsearch');
  cleanups.push(() => spool.close());
  const output = oc.plugin.create(oc.config, ctx);
  await output.start?.();
  cleanups.push(() => output.close?.());
  return { output, metrics };
}

const fast = 'retry: { initial_backoff: 5ms, max_backoff: 20ms }';
const signal = () => AbortSignal.timeout(10_000);

describe('@timestamp', () => {
  it('is added from the record time when the document has none, and the result is stable', () => {
    expect(withTimestamp('{"a":1}', Date.UTC(2025, 0, 2, 3, 4, 5, 6))).toBe('{"@timestamp":"2025-01-02T03:04:05.006Z","a":1}');
    expect(withTimestamp('{}', 0)).toBe('{"@timestamp":"1970-01-01T00:00:00.000Z"}');
    expect(withTimestamp(' { "a": 1 }', 0)).toBe(' {"@timestamp":"1970-01-01T00:00:00.000Z", "a": 1 }');
  });
  it('is kept when the document has one at the top level', () => {
    expect(withTimestamp('{"@timestamp":"x","a":1}', 0)).toBe('{"@timestamp":"x","a":1}');
  });
  it('a nested @timestamp does not count', () => {
    expect(withTimestamp('{"b":{"@timestamp":"x"}}', 0)).toBe('{"@timestamp":"1970-01-01T00:00:00.000Z","b":{"@timestamp":"x"}}');
  });
  it('non-objects are left to Elasticsearch to reject', () => {
    expect(withTimestamp('[1]', 0)).toBe('[1]');
    expect(withTimestamp('{"@timestamp": broken', 0)).toBe('{"@timestamp": broken');
  });
});

describe('bulk response', () => {
  it('errors:false is all delivered; a wrong item count is an error (the request is retried whole)', () => {
    expect(interpretBulkResponse('{"errors":false,"items":[]}', 3, 'create').failures).toEqual([]);
    expect(() => interpretBulkResponse('{"errors":true,"items":[{"create":{"status":201}}]}', 2, 'create')).toThrow(/1 items for 2/);
  });
  it('classifies items', () => {
    const items = [
      { create: { status: 201 } },
      { create: { status: 409, error: { type: 'version_conflict_engine_exception', reason: 'exists' } } },
      { create: { status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } } },
      { create: { status: 400, error: { type: 'document_parsing_exception', reason: 'bad field', caused_by: { type: 'number_format_exception', reason: 'x' } } } },
      { create: { status: 503, error: { type: 'unavailable_shards_exception', reason: 'no primary' } } },
      { create: { status: 500, error: { type: 'es_rejected_execution_exception', reason: 'rejected' } } },
      { create: { status: 404, error: { type: 'index_not_found_exception', reason: 'no such index' } } },
    ];
    const r = interpretBulkResponse(JSON.stringify({ errors: true, items }), items.length, 'create');
    expect(r.duplicates).toBe(1);
    expect(r.failures.map((f) => [f.index, f.kind])).toEqual([
      [2, 'retryable'],
      [3, 'permanent'],
      [4, 'retryable'],
      [5, 'retryable'],
      [6, 'permanent'],
    ]);
    expect(r.failures[1]!.detail).toBe('document_parsing_exception (HTTP 400): bad field (caused by number_format_exception: x)');
  });
  it('409 under op_type index is not a duplicate', () => {
    const r = interpretBulkResponse('{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}', 1, 'index');
    expect(r.failures).toHaveLength(1);
  });
});

describe('elasticsearch output: requests', () => {
  it('writes create actions with _id = record id into the index of the record time (UTC), gzipped', async () => {
    const server = await es();
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}\nindex: "k8s-audit-%Y.%m.%d"\npipeline: enrich`);
    const day1 = Date.UTC(2025, 0, 31, 23, 59, 59, 999);
    const recs = makeRecords(4, { timeMs: (i) => day1 + i });
    expect(await output.send(outbound(recs), signal())).toEqual({ kind: 'ok' });
    const req = server.bulkRequests[0]!;
    expect(req.headers['content-encoding']).toBe('gzip');
    expect(req.headers['content-type']).toBe('application/x-ndjson');
    expect(req.query.pipeline).toBe('enrich');
    expect(req.body.split('\n')[0]).toBe('{"create":{"_index":"k8s-audit-2025.01.31","_id":"rec-0"}}');
    expect(server.docs('k8s-audit-2025.01.31').size).toBe(1);
    expect(server.docs('k8s-audit-2025.02.01').size).toBe(3);
    const doc = server.docs('k8s-audit-2025.02.01').get('rec-2')!;
    expect(doc).toEqual({ '@timestamp': '2025-02-01T00:00:00.001Z', ...JSON.parse(recs[2]!.json) });
  });

  it('a replay answers 409 per item and counts as delivered (and as duplicates)', async () => {
    const server = await es();
    const { output, metrics } = await createOutput(`type: elasticsearch\nurl: ${server.url}\ncompression: none`);
    const recs = makeRecords(5);
    expect((await output.send(outbound(recs), signal())).kind).toBe('ok');
    expect((await output.send(outbound(recs), signal())).kind).toBe('ok');
    expect(server.docCount()).toBe(5);
    expect(server.bulkRequests[1]!.headers['content-encoding']).toBeUndefined();
    expect(await counterValue(metrics, 'ktrail_output_duplicates_total', { output: 'es' })).toBe(5);
  });

  it('op_type index overwrites by _id instead (still one document per record)', async () => {
    const server = await es();
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}\nop_type: index\nindex: audit`);
    const recs = makeRecords(3);
    await output.send(outbound(recs), signal());
    expect((await output.send(outbound(recs), signal())).kind).toBe('ok');
    expect(server.docCount('audit')).toBe(3);
    expect(server.bulkRequests[0]!.body).toContain('{"index":{"_index":"audit","_id":"rec-0"}}');
  });

  it('data streams get create actions and @timestamp; {input} in the name', async () => {
    const server = await es({ dataStreams: ['logs-k8s-audit'] });
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}\ndata_stream: "logs-k8s-{input}"`);
    expect((await output.send(outbound(makeRecords(3)), signal())).kind).toBe('ok');
    expect(server.docCount('logs-k8s-audit')).toBe(3);
    expect(server.docs('logs-k8s-audit').get('rec-0')!['@timestamp']).toBe(new Date(BASE_TIME_MS).toISOString());
  });

  it('works against OpenSearch answers and with a URL path prefix', async () => {
    const server = await es({ flavor: 'opensearch' });
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}/\nindex: os-%Y`);
    expect((await output.send(outbound(makeRecords(2)), signal())).kind).toBe('ok');
    expect(server.docCount('os-2025')).toBe(2);
  });

  it('whole-request answers: 429/503 retryable with Retry-After, 413 too_large, 400 permanent, 404 retryable', async () => {
    const server = await es();
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}`);
    server.failRequests({ status: 429, retryAfterSeconds: 3 });
    expect(await output.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'retryable', retryAfterMs: 3000 });
    server.failRequests({ status: 503 });
    const o503 = await output.send(outbound(makeRecords(2)), signal());
    expect(o503.kind === 'retryable' && o503.detail).toContain('HTTP 503: cluster_block_exception');
    server.failRequests({ status: 413 });
    expect((await output.send(outbound(makeRecords(2)), signal())).kind).toBe('too_large');
    server.failRequests({ status: 400, type: 'illegal_argument_exception', reason: 'nope' });
    expect((await output.send(outbound(makeRecords(2)), signal())).kind).toBe('permanent');
    server.failRequests({ status: 404 });
    expect((await output.send(outbound(makeRecords(2)), signal())).kind).toBe('retryable');
    server.resetNext(1);
    const reset = await output.send(outbound(makeRecords(2)), signal());
    expect(reset.kind === 'retryable' && reset.detail).toMatch(/^network /);
    expect(server.docCount()).toBe(0);
  });
});

describe('elasticsearch output: auth', () => {
  it('basic auth', async () => {
    const server = await es({ authorization: basicAuthorization('elastic', 's3cret') });
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}\nauth: { username: elastic, password: s3cret }`);
    expect((await output.send(outbound(makeRecords(1)), signal())).kind).toBe('ok');
  });

  it('API key as id:key or as the encoded value', async () => {
    const server = await es({ authorization: apiKeyAuthorization('kid', 'kval') });
    const a = await createOutput(`type: elasticsearch\nurl: ${server.url}\nauth: { api_key: "kid:kval" }`);
    expect((await a.output.send(outbound(makeRecords(1)), signal())).kind).toBe('ok');
    const encoded = Buffer.from('kid:kval').toString('base64');
    const b = await createOutput(`type: elasticsearch\nurl: ${server.url}\nauth: { api_key: "${encoded}" }`);
    expect((await b.output.send(outbound(makeRecords(1)), signal())).kind).toBe('ok');
  });

  it('401 is retryable, and a rotated bearer token file is picked up', async () => {
    const dir = tempDir(cleanups);
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'expired');
    const server = await es({ authorization: 'Bearer fresh' });
    const { output } = await createOutput(`type: elasticsearch\nurl: ${server.url}\nauth: { bearer_token: { file: ${file} } }`);
    const first = await output.send(outbound(makeRecords(1)), signal());
    expect(first.kind === 'retryable' && first.detail).toContain('HTTP 401: security_exception');
    fs.writeFileSync(file, 'fresh\n');
    expect((await output.send(outbound(makeRecords(1)), signal())).kind).toBe('ok');
  });
});

describe('elasticsearch output: config validation', () => {
  const load = (out: string) =>
    loadConfigText(`inputs: { gen: { type: fake } }\noutputs:\n  es:\n${out.replace(/^/gm, '    ')}`, 't.yaml', { extraPlugins: [fakeInputPlugin()] });
  it('names the problem', () => {
    expect(() => load('type: elasticsearch\nurl: http://x\nindex: Audit-%Y')).toThrow(/lowercase/);
    expect(() => load('type: elasticsearch\nurl: http://x\nindex: audit-%Q')).toThrow(/unknown time token "%Q"/);
    expect(() => load('type: elasticsearch\nurl: http://x\nindex: "a-{node}"')).toThrow(/unknown placeholder "\{node\}"/);
    expect(() => load('type: elasticsearch\nurl: http://x\nindex: a\ndata_stream: b')).toThrow(/either index or data_stream/);
    expect(() => load('type: elasticsearch\nurl: http://x\ndata_stream: b\nop_type: index')).toThrow(/only op_type: create/);
    expect(() => load('type: elasticsearch\nurl: http://x\nauth: { username: u, password: p, api_key: k }')).toThrow(/choose one/);
    expect(load('type: elasticsearch\nurl: http://x').outputs[0]!.config).toMatchObject({ op_type: 'create', compression: 'gzip', add_timestamp: true });
  });
});

describe('elasticsearch output in the agent', () => {
  function agentYaml(dir: string, server: EsBulkServer, total: number, extra = '', batch = 'batch: { max_records: 20, flush_interval: 10ms }') {
    return `
service: { state_dir: ${dir}, shutdown_timeout: 5s, metrics: { enabled: false } }
inputs: { gen: { type: fake, total: ${total}, batch: 20 } }
outputs:
  es: { type: elasticsearch, url: "${server.url}", index: audit, ${batch}, ${fast} ${extra} }`;
  }

  it('only failed items are retried: 429 / es_rejected / 503 items alone, until stored', async () => {
    const server = await es();
    const dir = tempDir(cleanups);
    server.failItems({ ids: ['rec-3', 'rec-7'], status: 429, times: 2 });
    server.failItems({ ids: ['rec-11'], status: 503, times: 1 });
    const { agent } = makeAgent(agentYaml(dir, server, 20));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => server.docCount('audit') === 20);
    await until(() => agent.spool.records === 0);
    const ids = server.bulkRequests.map((r) => r.body.split('\n').filter((_, i) => i % 2 === 0).filter(Boolean).map((l) => JSON.parse(l).create._id as string));
    expect(ids[0]).toHaveLength(20);
    expect(ids[1]).toEqual(['rec-3', 'rec-7', 'rec-11']);
    expect(ids[2]).toEqual(['rec-3', 'rec-7']);
    expect(ids).toHaveLength(3);
    expect(deadLetters(dir)).toEqual([]);
  });

  it('mapping errors (400 items) land in the dead-letter table with type and reason; the rest is delivered', async () => {
    const server = await es();
    const dir = tempDir(cleanups);
    server.failItems({ ids: ['rec-4'], status: 400 });
    const { agent, metrics } = makeAgent(agentYaml(dir, server, 20));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => agent.spool.records === 0);
    await agent.stop();
    expect(server.docCount('audit')).toBe(19);
    const rows = deadLetters(dir);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ component: 'es', output: 'es', record_id: 'rec-4' });
    expect(rows[0]!.reason).toMatch(/^document_parsing_exception \(HTTP 400\): \[1:2\] failed to parse field \[message\]/);
    expect(JSON.parse(rows[0]!.data)).toMatchObject({ seq: 4 });
    expect(await counterValue(metrics, 'ktrail_dead_letters_total', { component_id: 'es', reason: 'document_parsing_exception' })).toBe(1);
    expect(server.bulkRequests).toHaveLength(1);
  });

  it('whole-request 429 waits for Retry-After; 503 is retried; nothing is lost', async () => {
    const server = await es();
    const dir = tempDir(cleanups);
    server.failRequests({ status: 429, retryAfterSeconds: 1, times: 1 });
    server.failRequests({ status: 503, times: 2 });
    const { agent } = makeAgent(agentYaml(dir, server, 20));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => server.bulkRequests.length >= 1, 20_000, 'first request');
    const firstSeenMs = Date.now();
    await until(() => server.bulkRequests.length >= 2, 20_000, 'second request');
    const retryGapMs = Date.now() - firstSeenMs;
    await until(() => server.docCount('audit') === 20);
    expect(server.bulkRequests.map((r) => r.status)).toEqual([429, 503, 503, 200]);
    // Retry-After: 1 is honoured instead of the 5-20 ms backoff configured.
    expect(retryGapMs).toBeGreaterThanOrEqual(900);
  });

  it('413 makes the sender split the request until the halves fit', async () => {
    const server = await es({ maxContentLengthBytes: 2500 });
    const dir = tempDir(cleanups);
    const { agent } = makeAgent(agentYaml(dir, server, 40, ', compression: none', 'batch: { max_records: 40, flush_interval: 10ms }').replace('batch: 20', 'batch: 40'));
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => server.docCount('audit') === 40);
    expect(server.bulkRequests.filter((r) => r.status === 413).length).toBeGreaterThan(0);
    expect(server.bulkRequests.filter((r) => r.status === 200).every((r) => r.body.length <= 2500)).toBe(true);
    await until(() => agent.spool.records === 0);
  });

  it('nothing is acked before it is delivered: stopped while failing, the spool still holds every record; a restart delivers them', async () => {
    const server = await es();
    const dir = tempDir(cleanups);
    server.failRequests({ status: 503, times: 1_000_000 });
    const first = makeAgent(agentYaml(dir, server, 60).replace('shutdown_timeout: 5s', 'shutdown_timeout: 200ms'));
    await first.agent.start();
    await until(() => server.bulkRequests.length >= 3);
    await first.agent.stop();
    const pending = pendingIds(dir, 'es');
    expect(new Set(pending).size).toBe(60);
    expect(server.docCount()).toBe(0);

    server.clearFaults();
    const second = makeAgent(agentYaml(dir, server, 60));
    cleanups.push(() => second.agent.stop());
    await second.agent.start();
    await until(() => server.docCount('audit') === 60);
    await until(() => second.agent.spool.records === 0);
    await second.agent.stop();
    expect(pendingIds(dir, 'es')).toEqual([]);
  });
});
