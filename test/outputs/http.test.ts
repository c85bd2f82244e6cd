import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { httpOutput } from '../../src/outputs/http/http.ts';
import type { Output, SendOutcome } from '../../src/plugin.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { counterValue, deadLetters, HttpSink, makeAgent, makeRecords, outbound, startOutput, tempDir, until, type SinkReply } from './support/harness.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sink(): Promise<HttpSink> {
  const s = await new HttpSink().listen();
  cleanups.push(() => s.close());
  return s;
}

/** Build the plugin from YAML exactly as the agent would (validation included). */
async function createOutput(yamlOutput: string): Promise<{ output: Output; stateDir: string }> {
  const { output, dir } = await startOutput(cleanups, yamlOutput, { type: 'http' });
  return { output, stateDir: dir };
}

describe('http output: result classification', () => {
  const cases: Array<[string, SinkReply, SendOutcome['kind'], (o: SendOutcome) => void]> = [
    ['200', { status: 200 }, 'ok', () => {}],
    ['204', { status: 204 }, 'ok', () => {}],
    ['400', { status: 400, body: '{"error":"bad field"}' }, 'permanent', (o) => expect(o.kind === 'permanent' && o.detail).toContain('HTTP 400: bad field')],
    ['401', { status: 401 }, 'retryable', (o) => expect(o.kind === 'retryable' && o.detail).toContain('HTTP 401')],
    ['403', { status: 403 }, 'retryable', () => {}],
    ['404', { status: 404 }, 'permanent', () => {}],
    ['408', { status: 408 }, 'retryable', () => {}],
    ['413', { status: 413 }, 'too_large', () => {}],
    ['429 + Retry-After', { status: 429, headers: { 'retry-after': '7' } }, 'retryable', (o) => expect(o.kind === 'retryable' && o.retryAfterMs).toBe(7000)],
    ['500', { status: 500 }, 'retryable', () => {}],
    ['503 + HTTP-date Retry-After', { status: 503, headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() } }, 'retryable', (o) => {
      expect(o.kind === 'retryable' && o.retryAfterMs).toBeGreaterThan(50_000);
    }],
    ['connection reset', { status: 0, reset: true }, 'retryable', (o) => expect(o.kind === 'retryable' && o.detail).toMatch(/^network /)],
  ];
  for (const [name, reply, kind, check] of cases) {
    it(`${name} → ${kind}`, async () => {
      const s = await sink();
      s.reply = () => reply;
      const { output } = await createOutput(`type: http\nurl: ${s.url}/ingest`);
      const outcome = await output.send(outbound(makeRecords(3)), AbortSignal.timeout(10_000));
      expect(outcome.kind).toBe(kind);
      check(outcome);
    });
  }

  it('a timeout (the sender aborts the signal) → retryable', async () => {
    const s = await sink();
    s.reply = () => ({ status: 200, delayMs: 3000 });
    const { output } = await createOutput(`type: http\nurl: ${s.url}/ingest`);
    const outcome = await output.send(outbound(makeRecords(1)), AbortSignal.timeout(150));
    expect(outcome.kind).toBe('retryable');
  });

  it('connection refused → retryable', async () => {
    const s = await sink();
    const url = s.url;
    await s.close();
    cleanups.pop();
    const { output } = await createOutput(`type: http\nurl: ${url}/ingest`);
    const outcome = await output.send(outbound(makeRecords(1)), AbortSignal.timeout(5000));
    expect(outcome).toMatchObject({ kind: 'retryable' });
    expect(outcome.kind === 'retryable' && outcome.detail).toContain('ECONNREFUSED');
  });
});

describe('http output: encoding', () => {
  it('ndjson with Idempotency-Key, custom headers and basic auth', async () => {
    const s = await sink();
    const { output } = await createOutput(
      `type: http\nurl: ${s.url}/in?x=1\nheaders: { X-Tenant: t1 }\nauth: { username: u, password: p }`,
    );
    const recs = makeRecords(3);
    expect((await output.send(outbound(recs, 'out-5-7'), AbortSignal.timeout(5000))).kind).toBe('ok');
    const r = s.requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.url).toBe('/in?x=1');
    expect(r.headers['content-type']).toBe('application/x-ndjson');
    expect(r.headers['idempotency-key']).toBe('out-5-7');
    expect(r.headers['x-tenant']).toBe('t1');
    expect(r.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(r.body).toBe(recs.map((x) => `${x.json}\n`).join(''));
  });

  it('headers may override Content-Type and User-Agent (in any case), not the transport headers', async () => {
    const s = await sink();
    const { output } = await createOutput(`type: http\nurl: ${s.url}/\nheaders: { Content-Type: text/plain, USER-AGENT: me, Content-Length: '1' }`);
    const recs = makeRecords(2);
    expect((await output.send(outbound(recs), AbortSignal.timeout(5000))).kind).toBe('ok');
    const r = s.requests[0]!;
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.headers['user-agent']).toBe('me');
    expect(r.body).toBe(recs.map((x) => `${x.json}\n`).join(''));
  });

  it('json_array, gzip, PUT', async () => {
    const s = await sink();
    const { output } = await createOutput(`type: http\nurl: ${s.url}/\nmethod: PUT\nformat: json_array\ncompression: gzip`);
    const recs = makeRecords(4, { pad: 'x'.repeat(500) });
    expect((await output.send(outbound(recs), AbortSignal.timeout(5000))).kind).toBe('ok');
    const r = s.requests[0]!;
    expect(r.method).toBe('PUT');
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.rawBytes).toBeLessThan(r.body.length);
    expect(JSON.parse(r.body)).toEqual(recs.map((x) => JSON.parse(x.json)));
  });

  it('bearer token from a file is re-read after it rotates (401 → retry → new token accepted)', async () => {
    const s = await sink();
    const dir = tempDir(cleanups);
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, 'old-token\n');
    s.reply = (req) => ({ status: req.headers.authorization === 'Bearer new-token' ? 200 : 401 });
    const { output } = await createOutput(`type: http\nurl: ${s.url}/\nauth: { bearer_token: { file: ${tokenFile} } }`);
    expect((await output.send(outbound(makeRecords(1)), AbortSignal.timeout(5000))).kind).toBe('retryable');
    fs.writeFileSync(tokenFile, 'new-token\n');
    expect((await output.send(outbound(makeRecords(1)), AbortSignal.timeout(5000))).kind).toBe('ok');
    expect(s.requests.map((r) => r.headers.authorization)).toEqual(['Bearer old-token', 'Bearer new-token']);
  });

  it('rejects configs that cannot work, with the key named', () => {
    const load = (out: string) =>
      loadConfigText(`inputs: { gen: { type: fake } }\noutputs:\n  out:\n${out.replace(/^/gm, '    ')}`, 't.yaml', { extraPlugins: [fakeInputPlugin()] });
    expect(() => load('type: http\nurl: ftp://x')).toThrow(/outputs\.out\.url/);
    expect(() => load('type: http\nurl: http://x\nauth: { username: u }')).toThrow(/username and password/);
    expect(() => load('type: http\nurl: http://x\nauth: { api_key: k }')).toThrow(/api_key/);
    expect(() => load('type: http\nurl: http://x\ntls: { cert_file: /c }')).toThrow(/cert_file and key_file/);
  });
});

describe('http output in the agent', () => {
  it('retries with the same Idempotency-Key until accepted; the receiver keeps each record once', async () => {
    const s = await sink();
    const dir = tempDir(cleanups);
    // Every request fails twice (503, then 429 with Retry-After: 0) before it is accepted.
    const seen = new Map<string, number>();
    s.reply = (req) => {
      const key = String(req.headers['idempotency-key']);
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      if (n === 1) return { status: 503 };
      if (n === 2) return { status: 429, headers: { 'retry-after': '0' } };
      return { status: 200 };
    };
    const { agent, metrics } = makeAgent(`
service: { state_dir: ${dir}, shutdown_timeout: 5s, metrics: { enabled: false } }
inputs: { gen: { type: fake, total: 300, batch: 50 } }
outputs:
  web: { type: http, url: "${s.url}/", batch: { max_records: 100, flush_interval: 10ms }, retry: { initial_backoff: 5ms, max_backoff: 20ms } }`);
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => s.acceptedLines().length === 300, 20_000, 'all records accepted');
    await agent.stop();
    const ids = s.acceptedLines().map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(new Set(ids).size).toBe(300);
    // Each key was sent exactly three times: the retries reused it.
    expect([...seen.values()].every((n) => n === 3)).toBe(true);
    expect(s.requests.length).toBe(seen.size * 3);
    expect(await counterValue(metrics, 'ktrail_output_requests_total', { output: 'web', outcome: 'retryable' })).toBe(seen.size * 2);
  });

  it('413 makes the sender split: halves get their own stable keys and everything arrives', async () => {
    const s = await sink();
    const dir = tempDir(cleanups);
    s.reply = (req) => ({ status: req.body.split('\n').filter(Boolean).length > 10 ? 413 : 200 });
    const { agent } = makeAgent(`
service: { state_dir: ${dir}, shutdown_timeout: 5s, metrics: { enabled: false } }
inputs: { gen: { type: fake, total: 40, batch: 40 } }
outputs:
  web: { type: http, url: "${s.url}/", batch: { flush_interval: 10ms }, retry: { initial_backoff: 5ms, max_backoff: 20ms } }`);
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => s.acceptedLines().length === 40);
    await agent.stop();
    const keys = [...s.accepted.keys()];
    expect(keys.every((k) => /^web-1-1-s\d(-s\d)*$/.test(k))).toBe(true);
  });

  it('400 dead-letters the request with the status and body as the reason', async () => {
    const s = await sink();
    const dir = tempDir(cleanups);
    s.reply = () => ({ status: 400, body: 'schema violation' });
    const { agent } = makeAgent(`
service: { state_dir: ${dir}, shutdown_timeout: 5s, metrics: { enabled: false } }
inputs: { gen: { type: fake, total: 5, batch: 5 } }
outputs:
  web: { type: http, url: "${s.url}/", batch: { flush_interval: 10ms } }`);
    cleanups.push(() => agent.stop());
    await agent.start();
    await until(() => agent.spool.records === 0);
    await agent.stop();
    const rows = deadLetters(dir);
    expect(rows.map((r) => r.record_id)).toEqual(['rec-0', 'rec-1', 'rec-2', 'rec-3', 'rec-4']);
    expect(rows[0]!.reason).toBe('HTTP 400: schema violation');
    expect(rows[0]!.output).toBe('web');
  });
});

it('the plugin defaults are what the docs say', () => {
  expect(httpOutput.delivery).toMatchObject({ batch: { max_bytes: 1024 * 1024 }, concurrency: 1 });
});
