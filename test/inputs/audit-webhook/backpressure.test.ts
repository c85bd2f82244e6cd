import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfigText } from '../../../src/config/load.ts';
import { Agent } from '../../../src/pipeline/agent.ts';
import type { ProcessorPlugin } from '../../../src/plugin.ts';
import { createMetrics, type Metrics } from '../../../src/telemetry/metrics.ts';
import { Gate, gatedOutputPlugin } from '../../support/gated-output.ts';
import { auditId, line, removeTmpDirs, tmpDir, waitFor } from '../audit-file/harness.ts';
import { event, eventList, listeningPort, makeCerts, post, postHalf } from './support.ts';

/**
 * The webhook under a full spool, in-process: a real agent (spool, runner,
 * real audit_file and audit_webhook inputs) whose one output is a gate the
 * test holds closed, so nothing leaves the spool until the test opens it.
 */

const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  removeTmpDirs();
});

interface Running {
  agent: Agent;
  metrics: Metrics;
  gate: Gate;
  dir: string;
  port: number;
}

/** A processor the test holds: records pass only when `release` is called (a slow enrichment). */
function heldProcessor(): { plugin: ProcessorPlugin; release: () => void; waiting: () => number } {
  const waiters: Array<() => void> = [];
  const schema = z.strictObject({});
  const plugin: ProcessorPlugin<typeof schema> = {
    kind: 'processor',
    type: 'held',
    description: 'test processor',
    schema,
    create: () => ({ process: (records) => new Promise((resolve) => waiters.push(() => resolve(records))) }),
  };
  return { plugin: plugin as unknown as ProcessorPlugin, release: () => void waiters.splice(0).forEach((w) => w()), waiting: () => waiters.length };
}

async function start(opts: { maxBytes: string; hook: Record<string, unknown>; files?: Record<string, unknown>; whenFull?: string; held?: ProcessorPlugin }): Promise<Running> {
  const dir = tmpDir();
  makeCerts(dir);
  const gate = new Gate();
  gate.set('closed');
  const hook = {
    type: 'audit_webhook',
    address: '127.0.0.1',
    port: 0,
    tls: { cert_file: path.join(dir, 'server.pem'), key_file: path.join(dir, 'server.key'), client_ca_file: path.join(dir, 'ca.pem') },
    // Far beyond the test's own timeout: a refusal that waited for it would fail the test.
    request_timeout: '10m',
    ...opts.hook,
  };
  const text = [
    `service: { state_dir: ${JSON.stringify(path.join(dir, 'state'))}, shutdown_timeout: 2s }`,
    `spool: { max_bytes: ${opts.maxBytes}${opts.whenFull ? `, when_full: ${opts.whenFull}` : ''} }`,
    'inputs:',
    `  hook: ${JSON.stringify(hook)}`,
    ...(opts.files ? [`  files: ${JSON.stringify({ type: 'audit_file', ...opts.files })}`] : []),
    ...(opts.held ? ['processors:', '  slow: { type: held }'] : []),
    'outputs:',
    '  g: { type: gated, gate: a, retry: { initial_backoff: 5ms, max_backoff: 20ms } }',
  ].join('\n');
  const cfg = loadConfigText(text, 'test.yaml', { extraPlugins: [gatedOutputPlugin({ a: gate }), ...(opts.held ? [opts.held] : [])] });
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
  const metrics = createMetrics();
  const agent = new Agent(cfg, { log, metrics });
  agents.push(agent);
  await agent.start();
  const port = listeningPort(lines.join(''));
  if (port === undefined) throw new Error(`webhook not listening: ${lines.join('')}`);
  return { agent, metrics, gate, dir, port };
}

async function value(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

const idOf = (seq: number) => `${auditId(seq)}:ResponseComplete`;
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('audit_webhook backpressure', () => {
  it('spool full: 429 with Retry-After at once (not after request_timeout), counted at risk; 2xx once room frees; nothing lost', async () => {
    const r = await start({ maxBytes: '64KiB', hook: { spool_headroom: 0 } });
    const c = { port: r.port, dir: r.dir };
    const accepted: number[][] = [];
    let refused: { seqs: number[]; status: number; retryAfter: unknown } | undefined;
    for (let b = 0; b < 100 && refused === undefined; b++) {
      const seqs = range(b * 20, 20);
      const res = await post(c, eventList(seqs.map((s) => event(s))));
      if (res.status === 200) accepted.push(seqs);
      else refused = { seqs, status: res.status, retryAfter: res.headers['retry-after'] };
    }
    expect(refused).toBeDefined();
    expect(refused!.status).toBe(429);
    expect(refused!.retryAfter).toBe('5');
    expect(accepted.length).toBeGreaterThan(1);
    // Nothing of the refused batch was stored: the apiserver resends all of it.
    expect(r.agent.spool.records).toBe(accepted.length * 20);
    expect(await value(r.metrics, 'ktrail_audit_webhook_batches_at_risk_total', { reason: 'spool_full' })).toBe(1);
    expect(await value(r.metrics, 'ktrail_audit_webhook_requests_total', { code: '429' })).toBe(1);
    // Events are counted once taken: the refused body is not, until its resend is.
    expect(await value(r.metrics, 'ktrail_audit_webhook_events_total', {})).toBe(accepted.length * 20);

    r.gate.set('open');
    await waitFor(() => r.agent.spool.records === 0, 15_000, 'the spool to drain');
    expect((await post(c, eventList(refused!.seqs.map((s) => event(s))))).status).toBe(200);
    const want = [...accepted.flat(), ...refused!.seqs].map(idOf);
    await waitFor(() => new Set(r.gate.delivered).size === want.length, 15_000, 'every event delivered');
    expect(new Set(r.gate.delivered)).toEqual(new Set(want));
    expect(await value(r.metrics, 'ktrail_audit_webhook_events_total', {})).toBe(want.length);
  }, 60_000);

  it('spool full with when_full: drop_newest and non-ASCII text: refused (429), never answered 200 for records not stored', async () => {
    const r = await start({ maxBytes: '64KiB', hook: { spool_headroom: 0 }, whenFull: 'drop_newest' });
    const c = { port: r.port, dir: r.dir };
    // UTF-8 takes more bytes than the text's length here: the spool's own size check is the stricter one.
    const wide = (s: number) => ({ ...event(s), user: { username: `ü-${'é'.repeat(300)}` } });
    const accepted: number[][] = [];
    let refused: number | undefined;
    for (let b = 0; b < 200 && refused === undefined; b++) {
      const seqs = range(b * 5, 5);
      const res = await post(c, eventList(seqs.map(wide)));
      if (res.status === 200) accepted.push(seqs);
      else refused = res.status;
    }
    expect(refused).toBe(429);
    expect(accepted.length).toBeGreaterThan(1);
    // Every batch answered 200 is in the spool, whole.
    expect(r.agent.spool.records).toBe(accepted.length * 5);
    expect(await value(r.metrics, 'ktrail_component_discarded_events_total', { reason: 'spool_full' })).toBe(0);
    r.gate.set('open');
    const want = accepted.flat().map(idOf);
    await waitFor(() => new Set(r.gate.delivered).size === want.length, 15_000, 'every accepted event delivered');
    expect(new Set(r.gate.delivered)).toEqual(new Set(want));
  }, 60_000);

  it('keeps its reserve: a file input pauses at max_bytes minus the headroom while the webhook still commits', async () => {
    const dir = tmpDir();
    const log = path.join(dir, 'audit.log');
    const fileSeqs = range(100_000, 600);
    fs.writeFileSync(log, fileSeqs.map((s) => `${line(s)}\n`).join(''));
    const r = await start({
      maxBytes: '200KiB',
      hook: { spool_headroom: 0.5 },
      files: { paths: [log], read_buffer_size: '8KiB', rescan_interval: '50ms' },
    });
    const othersLimit = 100 * 1024;
    await waitFor(async () => (await value(r.metrics, 'ktrail_spool_full_waits_total', { input: 'files' })) > 0, 15_000, 'the file input to pause');
    const fileBytes = r.agent.spool.bytes;
    const fileRecords = r.agent.spool.records;
    expect(fileBytes).toBeLessThanOrEqual(othersLimit);
    expect(fileRecords).toBeLessThan(fileSeqs.length);

    const c = { port: r.port, dir: r.dir };
    const accepted: number[][] = [];
    let refused: number[] | undefined;
    for (let b = 0; b < 100 && refused === undefined; b++) {
      const seqs = range(b * 20, 20);
      const res = await post(c, eventList(seqs.map((s) => event(s))));
      if (res.status === 200) accepted.push(seqs);
      else {
        expect(res.status).toBe(429);
        refused = seqs;
      }
    }
    // The webhook committed into the reserve, above the file input's limit, and only then was refused.
    expect(accepted.length).toBeGreaterThan(2);
    expect(refused).toBeDefined();
    expect(r.agent.spool.bytes).toBeGreaterThan(othersLimit);
    // The file input stayed paused the whole time: the webhook took none of its room, nor it the webhook's.
    expect(r.agent.spool.records).toBe(fileRecords + accepted.length * 20);
    expect(await value(r.metrics, 'ktrail_audit_webhook_batches_at_risk_total', { reason: 'spool_full' })).toBe(1);

    r.gate.set('open');
    expect((await post(c, eventList(refused!.map((s) => event(s))))).status).toBe(200);
    const want = new Set([...fileSeqs, ...accepted.flat(), ...refused!].map(idOf));
    await waitFor(() => new Set(r.gate.delivered).size === want.size, 20_000, 'every file line and event delivered');
    expect(new Set(r.gate.delivered)).toEqual(want);
  }, 60_000);

  it('max_concurrent_requests: one more request is answered 429 with Retry-After and counted; the held ones commit', async () => {
    const r = await start({ maxBytes: '64MiB', hook: { max_concurrent_requests: 2 } });
    r.gate.set('open');
    // Two requests whose bodies arrive only half: both are in flight until the test ends them.
    const held = [range(0, 10), range(10, 10)].map((seqs) => postHalf({ port: r.port, dir: r.dir, path: '/' }, eventList(seqs.map((s) => event(s)))));
    await waitFor(async () => (await value(r.metrics, 'ktrail_audit_webhook_in_flight_requests')) === 2, 15_000, 'two requests in flight');
    const extra = range(20, 10);
    const third = await post({ port: r.port, dir: r.dir }, eventList(extra.map((s) => event(s))));
    expect(third.status).toBe(429);
    expect(third.headers['retry-after']).toBe('5');
    expect(await value(r.metrics, 'ktrail_audit_webhook_batches_at_risk_total', { reason: 'too_many_requests' })).toBe(1);
    for (const h of held) h.finish();
    expect(await Promise.all(held.map((h) => h.answer))).toEqual([200, 200]);
    expect((await post({ port: r.port, dir: r.dir }, eventList(extra.map((s) => event(s))))).status).toBe(200);
    const want = new Set(range(0, 30).map(idOf));
    await waitFor(() => new Set(r.gate.delivered).size === want.size, 15_000, 'all 30 events delivered');
    expect(new Set(r.gate.delivered)).toEqual(want);
  }, 60_000);

  it('a commit kept past request_timeout is answered 503 and keeps its max_concurrent_requests slot until it settles', async () => {
    const held = heldProcessor();
    const r = await start({ maxBytes: '16MiB', hook: { request_timeout: '500ms', max_concurrent_requests: 1 }, held: held.plugin });
    r.gate.set('open');
    const c = { port: r.port, dir: r.dir };
    const slow = await post(c, eventList(range(0, 5).map((s) => event(s))));
    expect(slow.status).toBe(503);
    expect(held.waiting()).toBe(1);
    // Its commit still runs: one more request would hold a second copy in memory, so it is refused.
    expect((await post(c, eventList(range(5, 5).map((s) => event(s))))).status).toBe(429);
    expect(await value(r.metrics, 'ktrail_audit_webhook_batches_at_risk_total', { reason: 'too_many_requests' })).toBe(1);
    held.release();
    await waitFor(() => new Set(r.gate.delivered).size === 5, 15_000, 'the late commit delivered');
    // The slot is free again once it settled.
    const next = post(c, eventList(range(5, 5).map((s) => event(s))));
    await waitFor(() => held.waiting() === 1, 5000, 'the next request at the processor');
    held.release();
    // Taken, not refused (a 503 here would only mean this machine took longer than request_timeout to release it).
    expect([200, 503]).toContain((await next).status);
    expect(new Set(r.gate.delivered)).toEqual(new Set(range(0, 10).map(idOf)));
  }, 60_000);
});
