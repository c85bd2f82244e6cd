import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { z } from 'zod';
import { loadConfigText } from '../../src/config/load.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import type { ProcessorPlugin } from '../../src/plugin.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { Gate, gatedOutputPlugin } from '../support/gated-output.ts';

const dirs: string[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const throwingProcessor: ProcessorPlugin = {
  kind: 'processor',
  type: 'explode',
  description: 'test processor that throws on a marked record',
  schema: z.strictObject({}),
  create: () => ({
    process(records) {
      if (records.some((r) => r.id === 'rec-3')) throw new Error('boom');
      return records;
    },
  }),
};

function setup(yaml: (dir: string) => string, gates: Record<string, Gate> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-agent-'));
  dirs.push(dir);
  const text = yaml(dir);
  const make = () => {
    const cfg = loadConfigText(text, 'test.yaml', { extraPlugins: [fakeInputPlugin(), gatedOutputPlugin(gates), throwingProcessor] });
    const metrics = createMetrics();
    const agent = new Agent(cfg, { log: createLogger('silent'), metrics });
    agents.push(agent);
    return { agent, metrics };
  };
  return { dir, make };
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function counter(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

const fastRetry = 'retry: { initial_backoff: 5ms, max_backoff: 20ms }';

describe('agent pipeline', () => {
  it('delivers every record and stops gracefully with the spool empty', async () => {
    const gate = new Gate();
    const { make } = setup((d) => `
service: { state_dir: ${d}/state, shutdown_timeout: 5s }
inputs: { gen: { type: fake, total: 500, batch: 50 } }
outputs: { g: { type: gated, gate: a, ${fastRetry} } }`, { a: gate });
    const { agent, metrics } = make();
    await agent.start();
    await until(() => gate.delivered.length === 500);
    await agent.stop();
    expect(new Set(gate.delivered).size).toBe(500);
    expect(await counter(metrics, 'ktrail_component_sent_events_total', { component_kind: 'input' })).toBe(500);
    expect(await counter(metrics, 'ktrail_component_sent_events_total', { component_kind: 'output' })).toBe(500);
  });

  it('stop with a sink down: drains until the deadline, keeps the rest, a restart delivers it and reads nothing twice', async () => {
    const gate = new Gate();
    gate.set('failing');
    const { make } = setup((d) => `
service: { state_dir: ${d}/state, shutdown_timeout: 300ms }
inputs: { gen: { type: fake, total: 200, batch: 20 } }
outputs: { g: { type: gated, gate: a, ${fastRetry} } }`, { a: gate });
    const first = make();
    await first.agent.start();
    await until(() => first.agent.spool.records === 200);
    await first.agent.stop();
    expect(gate.delivered.length).toBe(0);
    gate.set('open');
    const second = make();
    await second.agent.start();
    await until(() => gate.delivered.length === 200);
    // The input's checkpoint came back with the spool: nothing re-read, nothing lost.
    expect(new Set(gate.delivered).size).toBe(200);
    expect(await counter(second.metrics, 'ktrail_component_sent_events_total', { component_kind: 'input' })).toBe(0);
  });

  it('a drain that takes long logs at warn what it waits for, the deadline and that a second Ctrl-C exits now', async () => {
    const gate = new Gate();
    gate.set('failing');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-agent-'));
    dirs.push(dir);
    const cfg = loadConfigText(`
service: { state_dir: ${dir}/state, shutdown_timeout: 1500ms }
inputs: { gen: { type: fake, total: 40, batch: 20 } }
outputs: { down: { type: gated, gate: a, ${fastRetry} } }`, 'test.yaml', { extraPlugins: [fakeInputPlugin(), gatedOutputPlugin({ a: gate })] });
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const agent = new Agent(cfg, { log, metrics: createMetrics() });
    agents.push(agent);
    await agent.start();
    await until(() => agent.spool.records === 40);
    await agent.stop();
    const wait = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('stopping: waiting for'));
    expect(wait, JSON.stringify(lines)).toBeDefined();
    expect(wait!.level).toBe(40); // warn
    expect(wait!.msg).toMatch(/down \(2 pending batches\)/);
    expect(wait!.msg).toMatch(/press Ctrl-C again .* to exit now/);
    expect(wait!.waitingFor).toEqual([{ output: 'down', pendingBatches: 2, pendingRecords: 40 }]);
    expect(typeof wait!.deadline).toBe('string');
  });

  it('a quick drain says nothing at warn', async () => {
    const gate = new Gate();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-agent-'));
    dirs.push(dir);
    const cfg = loadConfigText(`
service: { state_dir: ${dir}/state, shutdown_timeout: 5s }
inputs: { gen: { type: fake, total: 40, batch: 20 } }
outputs: { up: { type: gated, gate: a, ${fastRetry} } }`, 'test.yaml', { extraPlugins: [fakeInputPlugin(), gatedOutputPlugin({ a: gate })] });
    const lines: string[] = [];
    const agent = new Agent(cfg, { log: pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) }), metrics: createMetrics() });
    agents.push(agent);
    await agent.start();
    await until(() => gate.delivered.length === 40);
    await agent.stop();
    expect(lines).toEqual([]);
  });

  it('when_full: block pauses the input while the spool is full and resumes when outputs catch up', async () => {
    const gate = new Gate();
    gate.set('closed');
    const { make } = setup((d) => `
service: { state_dir: ${d}/state }
spool: { max_bytes: 4KiB, when_full: block }
inputs: { gen: { type: fake, total: 400, batch: 10, bytes_per_record: 40 } }
outputs: { g: { type: gated, gate: a, batch: { max_records: 10 }, ${fastRetry} } }`, { a: gate });
    const { agent, metrics } = make();
    await agent.start();
    await until(async () => (await counter(metrics, 'ktrail_spool_full_waits_total', {})) > 0);
    const spooled = agent.spool.records;
    await new Promise((r) => setTimeout(r, 200));
    expect(agent.spool.records).toBe(spooled); // paused, not dropping, not growing
    expect(agent.spool.bytes).toBeLessThanOrEqual(4096 + 1024);
    gate.set('open');
    await until(() => gate.delivered.length === 400);
    expect(new Set(gate.delivered).size).toBe(400);
    expect(await counter(metrics, 'ktrail_component_discarded_events_total', {})).toBe(0);
  });

  it('when_full: drop_newest drops and counts instead of pausing', async () => {
    const gate = new Gate();
    gate.set('closed');
    const { make } = setup((d) => `
service: { state_dir: ${d}/state }
spool: { max_bytes: 2KiB, when_full: drop_newest }
inputs: { gen: { type: fake, total: 300, batch: 10, bytes_per_record: 40 } }
outputs: { g: { type: gated, gate: a, ${fastRetry} } }`, { a: gate });
    const { agent, metrics } = make();
    await agent.start();
    await until(async () => (await counter(metrics, 'ktrail_component_sent_events_total', { component_kind: 'input' })) + (await counter(metrics, 'ktrail_component_discarded_events_total', { reason: 'spool_full' })) === 300);
    const dropped = await counter(metrics, 'ktrail_component_discarded_events_total', { reason: 'spool_full', component_id: 'gen' });
    expect(dropped).toBeGreaterThan(0);
    gate.set('open');
    await until(() => gate.delivered.length === 300 - dropped);
  });

  it('a processor that throws dead-letters its records instead of shipping them half-processed', async () => {
    const gate = new Gate();
    const { make } = setup((d) => `
service: { state_dir: ${d}/state }
inputs: { gen: { type: fake, total: 10, batch: 2 } }
processors: { p: { type: explode } }
outputs: { g: { type: gated, gate: a, ${fastRetry} } }`, { a: gate });
    const { agent } = make();
    await agent.start();
    await until(() => gate.delivered.length === 8);
    const rows = agent.spool.db.prepare('SELECT component, record_id AS id, reason FROM dead_letters ORDER BY id').all();
    expect(rows).toEqual([
      { component: 'p', id: 'rec-2', reason: 'processor p failed: boom' },
      { component: 'p', id: 'rec-3', reason: 'processor p failed: boom' },
    ]);
  });

  it('routes each input only to the outputs that match it', async () => {
    const a = new Gate();
    const b = new Gate();
    const { make } = setup((d) => `
service: { state_dir: ${d}/state }
inputs: { one: { type: fake, total: 5 }, two: { type: fake, total: 7 } }
outputs:
  a: { type: gated, gate: a, match: [one] }
  b: { type: gated, gate: b, match: ["*"] }`, { a, b });
    const { agent } = make();
    await agent.start();
    await until(() => a.delivered.length === 5 && b.delivered.length === 12);
    await new Promise((r) => setTimeout(r, 50));
    expect(a.delivered.length).toBe(5);
  });

  it('readiness fails for an output stalled beyond output_stall_timeout and recovers', async () => {
    const gate = new Gate();
    gate.set('failing');
    const { make } = setup((d) => `
service: { state_dir: ${d}/state, output_stall_timeout: 100ms }
inputs: { gen: { type: fake, total: 5 } }
outputs: { g: { type: gated, gate: a, ${fastRetry} } }`, { a: gate });
    const { agent } = make();
    await agent.start();
    await until(() => !agent.readiness().ready);
    expect(agent.readiness().checks['output:g']!.ok).toBe(false);
    gate.set('open');
    await until(() => agent.readiness().ready);
  });
});
