import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backoffCeilingMs, parseRetryAfterMs, retryDelayMs, RETRY_AFTER_CAP_MS } from '../../src/delivery/backoff.ts';
import { splitRecords } from '../../src/delivery/batching.ts';
import { destinationCode } from '../../src/delivery/outcome.ts';
import { OutputRunner, type SenderConfig } from '../../src/delivery/runner.ts';
import type { OutboundRequest, Output, SendOutcome } from '../../src/plugin.ts';
import type { SpooledRecord } from '../../src/pipeline/record.ts';
import { Spool } from '../../src/spool/spool.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics } from '../../src/telemetry/metrics.ts';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function newSpool(): Spool {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-sender-'));
  dirs.push(d);
  const s = new Spool({ stateDir: d, maxBytes: 1e9 });
  cleanups.push(() => s.close());
  return s;
}

function recs(from: number, n: number): SpooledRecord[] {
  return Array.from({ length: n }, (_, i) => ({ id: `id-${from + i}`, timeMs: from + i, input: 'in', json: JSON.stringify({ n: from + i }) }));
}

const fast: SenderConfig = {
  maxBatchBytes: 1024 * 1024,
  maxBatchRecords: 1000,
  flushIntervalMs: 0,
  concurrency: 1,
  requestTimeoutMs: 2000,
  initialBackoffMs: 5,
  maxBackoffMs: 20,
  maxElapsedMs: undefined,
};

/** An output that answers from a script and records every request it saw. */
class ScriptedOutput implements Output {
  readonly requests: Array<{ key: string; ids: string[]; attempt: number; atMs: number }> = [];
  readonly delivered = new Set<string>();
  readonly #answer: (req: OutboundRequest, n: number, signal: AbortSignal) => Promise<SendOutcome> | SendOutcome;
  constructor(answer: (req: OutboundRequest, n: number, signal: AbortSignal) => Promise<SendOutcome> | SendOutcome) {
    this.#answer = answer;
  }
  async send(req: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    this.requests.push({ key: req.key, ids: req.records.map((r) => r.id), attempt: req.attempt, atMs: Date.now() });
    const out = await this.#answer(req, this.requests.length, signal);
    if (out.kind === 'ok') for (const r of req.records) this.delivered.add(r.id);
    if (out.kind === 'partial') {
      const failed = new Set(out.failures.map((f) => f.index));
      req.records.forEach((r, i) => failed.has(i) || this.delivered.add(r.id));
    }
    return out;
  }
}

function runner(spool: Spool, output: Output, config: Partial<SenderConfig> = {}) {
  const metrics = createMetrics();
  const r = new OutputRunner({
    name: 'out',
    output,
    spool,
    config: { ...fast, ...config },
    metrics,
    telemetry: new ComponentTelemetry(metrics, 'output', 'out', 'scripted'),
    log: createLogger('silent'),
  });
  cleanups.push(() => r.stop());
  return { runner: r, metrics };
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function deadLetters(spool: Spool) {
  return spool.db.prepare('SELECT output, record_id AS recordId, reason FROM dead_letters ORDER BY id').all() as Array<{ output: string; recordId: string; reason: string }>;
}

describe('backoff', () => {
  it('full jitter stays within [0, min(max, initial * 2^(n-1))]', () => {
    const policy = { initialBackoffMs: 100, maxBackoffMs: 1000 };
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffCeilingMs(policy, n))).toEqual([100, 200, 400, 800, 1000, 1000]);
    for (let n = 1; n <= 8; n++) {
      expect(retryDelayMs(policy, n, undefined, () => 0)).toBe(0);
      const hi = retryDelayMs(policy, n, undefined, () => 0.999999);
      expect(hi).toBeLessThan(backoffCeilingMs(policy, n));
      expect(hi).toBeGreaterThanOrEqual(backoffCeilingMs(policy, n) * 0.99);
    }
    let seen = 0;
    for (let i = 0; i < 200; i++) seen = Math.max(seen, retryDelayMs(policy, 3, undefined));
    expect(seen).toBeLessThanOrEqual(400);
  });

  it('Retry-After is a floor over the jitter, capped; Retry-After: 0 keeps the backoff', () => {
    const policy = { initialBackoffMs: 100, maxBackoffMs: 1000 };
    expect(retryDelayMs(policy, 1, 5000, () => 0)).toBe(5000);
    expect(retryDelayMs(policy, 4, 50, () => 0.5)).toBe(400);
    expect(retryDelayMs(policy, 4, 0, () => 0.5)).toBe(400);
    expect(retryDelayMs(policy, 1, 10 * 3_600_000)).toBe(RETRY_AFTER_CAP_MS);
    expect(parseRetryAfterMs('7')).toBe(7000);
    expect(parseRetryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 30)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(30_000);
    expect(parseRetryAfterMs('soon')).toBeUndefined();
    expect(parseRetryAfterMs(undefined)).toBeUndefined();
  });

  it('splitRecords respects both limits and keeps at least one record per part', () => {
    const r = recs(0, 10);
    expect(splitRecords(r, 1e9, 3).map((p) => p.length)).toEqual([3, 3, 3, 1]);
    expect(splitRecords(r, 1, 100).map((p) => p.length)).toEqual(Array(10).fill(1));
  });
});

describe('delivery runner', () => {
  it('retries retryable failures with backoff, then acks', async () => {
    const spool = newSpool();
    for (let i = 0; i < 3; i++) spool.append({ input: 'in', records: recs(i * 10, 10), routes: ['out'] });
    const out = new ScriptedOutput((_, n) => (n <= 2 ? { kind: 'retryable', code: 'http_503', detail: 'HTTP 503: busy' } : { kind: 'ok' }));
    const { runner: r, metrics } = runner(spool, out);
    r.start();
    await until(() => spool.batches === 0);
    expect(out.delivered.size).toBe(30);
    expect(out.requests.map((q) => q.attempt)).toEqual([1, 2, 3]);
    expect(new Set(out.requests.map((q) => q.key)).size).toBe(1);
    const retries = (await metrics.outputRetries.get()).values;
    expect(retries).toEqual([expect.objectContaining({ value: 2, labels: { output: 'out', reason: 'http_503' } })]);
  });

  it('takes metric labels only from outcome codes: a code that is not one counts as invalid_outcome', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 3), routes: ['out'] });
    const bogus = { kind: 'retryable', code: 'HTTP 503: Service Unavailable', detail: 'free text where a code belongs' } as unknown as SendOutcome;
    const out = new ScriptedOutput((_, n) => (n === 1 ? bogus : n === 2 ? { kind: 'retryable', code: 'network', detail: 'network ECONNRESET: socket hang up' } : { kind: 'ok' }));
    const { runner: r, metrics } = runner(spool, out);
    r.start();
    await until(() => spool.batches === 0);
    const labels = (await metrics.outputRetries.get()).values.map((v) => v.labels.reason).toSorted();
    expect(labels).toEqual(['invalid_outcome', 'network']);
  });

  it('normalises a destination error type into a code', () => {
    expect(destinationCode('mapper_parsing_exception')).toBe('mapper_parsing_exception');
    expect(destinationCode('Some.Weird-Type!')).toBe('some_weird_type');
    expect(destinationCode('')).toBe('unknown_error');
    expect(destinationCode('x'.repeat(80))).toHaveLength(40);
  });

  it('honours Retry-After', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const out = new ScriptedOutput((_, n) => (n === 1 ? { kind: 'retryable', code: 'http_429', detail: 'HTTP 429', retryAfterMs: 300 } : { kind: 'ok' }));
    runner(spool, out).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests[1]!.atMs - out.requests[0]!.atMs).toBeGreaterThanOrEqual(290);
  });

  it('permanent failures go to the dead-letter table and the batch is acked', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 2), routes: ['out'] });
    const out = new ScriptedOutput(() => ({ kind: 'permanent', code: 'http_400', detail: 'HTTP 400: bad request' }));
    const { runner: r, metrics } = runner(spool, out);
    r.start();
    await until(() => spool.batches === 0);
    expect(deadLetters(spool)).toEqual([
      { output: 'out', recordId: 'id-0', reason: 'HTTP 400: bad request' },
      { output: 'out', recordId: 'id-1', reason: 'HTTP 400: bad request' },
    ]);
    expect((await metrics.deadLetters.get()).values[0]).toMatchObject({ value: 2, labels: { component_id: 'out', reason: 'http_400' } });
  });

  it('partial: only retryable items are resent, permanent items are dead-lettered', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 4), routes: ['out'] });
    const out = new ScriptedOutput((req, n) => {
      if (n === 1)
        return {
          kind: 'partial',
          failures: [
            { index: 1, kind: 'retryable', code: destinationCode('es_rejected_execution_exception'), detail: 'es_rejected_execution_exception' },
            { index: 2, kind: 'permanent', code: destinationCode('mapper_parsing_exception'), detail: 'mapper_parsing_exception: bad field' },
            { index: 3, kind: 'retryable', code: destinationCode('es_rejected_execution_exception'), detail: 'es_rejected_execution_exception' },
          ],
        };
      return { kind: 'ok' };
    });
    runner(spool, out).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests.map((q) => q.ids)).toEqual([['id-0', 'id-1', 'id-2', 'id-3'], ['id-1', 'id-3']]);
    expect(deadLetters(spool)).toEqual([{ output: 'out', recordId: 'id-2', reason: 'mapper_parsing_exception: bad field' }]);
  });

  it('too_large: splits the request until it fits; a single record too large is dead-lettered', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 8), routes: ['out'] });
    const out = new ScriptedOutput((req) =>
      req.records.some((r) => r.id === 'id-5') ? { kind: 'too_large', code: 'http_413', detail: 'HTTP 413' } : req.records.length > 2 ? { kind: 'too_large', code: 'http_413', detail: 'HTTP 413' } : { kind: 'ok' },
    );
    runner(spool, out).runner.start();
    await until(() => spool.batches === 0);
    expect([...out.delivered].sort()).toEqual(['id-0', 'id-1', 'id-2', 'id-3', 'id-4', 'id-6', 'id-7']);
    expect(deadLetters(spool)).toEqual([{ output: 'out', recordId: 'id-5', reason: 'too large for the destination: HTTP 413' }]);
    // Split keys are derived from the group key: stable on replay.
    expect(out.requests.every((q) => q.key.startsWith('out-1-1'))).toBe(true);
  });

  it('a send that outlives request_timeout is aborted and retried', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const out = new ScriptedOutput(async (_, n, signal) => {
      if (n === 1) {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return { kind: 'retryable', code: 'aborted', detail: 'aborted' };
      }
      return { kind: 'ok' };
    });
    const { runner: r, metrics } = runner(spool, out, { requestTimeoutMs: 100 });
    r.start();
    await until(() => spool.batches === 0);
    expect(out.requests.length).toBe(2);
    const outcomes = (await metrics.outputRequests.get()).values.map((v) => [v.labels.outcome, v.value]);
    expect(outcomes).toEqual(expect.arrayContaining([['timeout', 1], ['ok', 1]]));
  });

  it('max_elapsed: dead-letters what still fails after the retry budget', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const out = new ScriptedOutput(() => ({ kind: 'retryable', code: 'http_503', detail: 'HTTP 503' }));
    runner(spool, out, { maxElapsedMs: 100 }).runner.start();
    await until(() => spool.batches === 0);
    expect(deadLetters(spool)[0]!.reason).toMatch(/^retries exhausted after 100 ms: HTTP 503/);
    expect(out.requests.length).toBeGreaterThan(1);
  });

  it('groups whole batches up to max_records and flushes partial groups after flush_interval', async () => {
    const spool = newSpool();
    for (let i = 0; i < 5; i++) spool.append({ input: 'in', records: recs(i * 4, 4), routes: ['out'] });
    const out = new ScriptedOutput(() => ({ kind: 'ok' }));
    runner(spool, out, { maxBatchRecords: 8, flushIntervalMs: 150 }).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests.map((q) => q.ids.length)).toEqual([8, 8, 4]);
    expect(out.requests[2]!.atMs - out.requests[1]!.atMs).toBeGreaterThanOrEqual(0);
  });

  it('after a stop mid-send the same group is resent with the same key, then acked', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 3), routes: ['out'] });
    spool.append({ input: 'in', records: recs(3, 3), routes: ['out'] });
    const hang = new ScriptedOutput(async (_, __, signal) => {
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      return { kind: 'retryable', code: 'aborted', detail: 'aborted' };
    });
    const first = runner(spool, hang, { requestTimeoutMs: 60_000 }).runner;
    first.start();
    await until(() => hang.requests.length === 1);
    await first.stop();
    expect(spool.batches).toBe(2); // nothing acked
    // More data arrives while down; the replay must not fold it into the old group.
    spool.append({ input: 'in', records: recs(6, 3), routes: ['out'] });
    const ok = new ScriptedOutput(() => ({ kind: 'ok' }));
    runner(spool, ok).runner.start();
    await until(() => spool.batches === 0);
    expect(ok.requests[0]!.key).toBe(hang.requests[0]!.key);
    expect(ok.requests[0]!.ids).toEqual(hang.requests[0]!.ids);
    expect(ok.delivered.size).toBe(9);
    expect(spool.journaledRequests('out')).toEqual([]);
  });

  it('drain delivers the backlog before the deadline and reports whether it emptied', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 5), routes: ['out'] });
    const out = new ScriptedOutput(() => ({ kind: 'ok' }));
    const r = runner(spool, out, { flushIntervalMs: 60_000 }).runner;
    r.start();
    expect(await r.drain(Date.now() + 5000)).toBe(true);
    expect(out.delivered.size).toBe(5);

    const spool2 = newSpool();
    spool2.append({ input: 'in', records: recs(0, 5), routes: ['out'] });
    const down = new ScriptedOutput(() => ({ kind: 'retryable', code: 'http_503', detail: 'HTTP 503' }));
    const r2 = runner(spool2, down).runner;
    r2.start();
    expect(await r2.drain(Date.now() + 200)).toBe(false);
    expect(spool2.records).toBe(5);
  });

  it('malformed outcomes are retried, never taken as delivered', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 2), routes: ['out'] });
    const answers: unknown[] = [undefined, { kind: 'partial', failures: 'nope' }, { kind: 'partial', failures: [{ index: 9, kind: 'permanent', code: 'x', detail: 'x' }] }, { kind: 'ok' }];
    const out = new ScriptedOutput((_, n) => answers[n - 1] as SendOutcome);
    runner(spool, out).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests.length).toBe(4);
    expect(deadLetters(spool)).toEqual([]);
  });

  it('partial: an item reported twice gets one verdict (the first) and is resent once', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 3), routes: ['out'] });
    const out = new ScriptedOutput((_, n) =>
      n === 1
        ? {
            kind: 'partial',
            failures: [
              { index: 0, kind: 'retryable', code: destinationCode('es_rejected_execution_exception'), detail: 'es_rejected_execution_exception' },
              { index: 0, kind: 'permanent', code: destinationCode('mapper_parsing_exception'), detail: 'mapper_parsing_exception' },
              { index: 2, kind: 'retryable', code: destinationCode('es_rejected_execution_exception'), detail: 'es_rejected_execution_exception' },
              { index: 2, kind: 'retryable', code: destinationCode('es_rejected_execution_exception'), detail: 'es_rejected_execution_exception' },
            ],
          }
        : { kind: 'ok' },
    );
    runner(spool, out).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests[1]!.ids).toEqual(['id-0', 'id-2']);
    expect(deadLetters(spool)).toEqual([]);
  });

  it('a group whose delivery throws (spool I/O) is retried in the same process', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 2), routes: ['out'] });
    spool.append({ input: 'in', records: recs(2, 2), routes: ['out'] });
    const realAck = spool.ack.bind(spool);
    let fail = 1;
    spool.ack = (...args: Parameters<Spool['ack']>) => {
      if (fail-- > 0) throw new Error('SQLITE_FULL: database or disk is full');
      return realAck(...args);
    };
    const out = new ScriptedOutput(() => ({ kind: 'ok' }));
    const { runner: r, metrics } = runner(spool, out, { maxBatchRecords: 2 });
    r.start();
    await until(() => spool.batches === 0);
    expect(out.requests.map((q) => q.key).sort()).toEqual(['out-1-1', 'out-1-1', 'out-2-2']);
    expect((await metrics.errors.get()).values.find((v) => v.labels.reason === 'exception')?.value).toBe(1);
  });

  it('an output that ignores its abort signal cannot hold up the timeout or a stop', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const out = new ScriptedOutput((_, n) => (n === 1 ? new Promise<SendOutcome>(() => {}) : { kind: 'ok' }));
    runner(spool, out, { requestTimeoutMs: 100 }).runner.start();
    await until(() => spool.batches === 0);
    expect(out.requests.length).toBe(2);

    const spool2 = newSpool();
    spool2.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const hang = new ScriptedOutput(() => new Promise<SendOutcome>(() => {}));
    const r2 = runner(spool2, hang, { requestTimeoutMs: 60_000 }).runner;
    r2.start();
    await until(() => hang.requests.length === 1);
    const t0 = Date.now();
    await r2.stop();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(spool2.records).toBe(1);
  });

  it('drain of a runner that never started returns at once; stall time counts from the oldest pending data', async () => {
    const spool = newSpool();
    spool.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    const idle = runner(spool, new ScriptedOutput(() => ({ kind: 'ok' }))).runner;
    const t0 = Date.now();
    expect(await idle.drain(Date.now() + 10_000)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1000);

    const spool2 = newSpool();
    const gate = { open: false };
    const out = new ScriptedOutput(() => (gate.open ? { kind: 'ok' } : { kind: 'retryable', code: 'http_503', detail: 'HTTP 503' }));
    const r = runner(spool2, out).runner;
    r.start();
    await new Promise((res) => setTimeout(res, 300)); // idle, no data: not stalled
    expect(r.stalledForMs()).toBe(0);
    spool2.append({ input: 'in', records: recs(0, 1), routes: ['out'] });
    expect(r.stalledForMs()).toBeLessThan(200); // new data after an idle spell is not an old stall
    await new Promise((res) => setTimeout(res, 250));
    expect(r.stalledForMs()).toBeGreaterThanOrEqual(200);
    gate.open = true;
    await until(() => spool2.batches === 0);
    expect(r.stalledForMs()).toBe(0);
  });
});
