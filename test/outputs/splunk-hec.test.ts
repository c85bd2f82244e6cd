import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventTimeSeconds } from '../../src/outputs/splunk-hec/splunk-hec.ts';
import type { Output } from '../../src/plugin.ts';
import { FakeHec } from '../helpers/splunk-hec-server.ts';
import { auditId } from '../inputs/audit-file/harness.ts';
import { auditFileConfig, counterValue, deadLetters, makeAgent, makeRecords, outbound, sigkillRestarts, startChild, startOutput, tempDir, until } from './support/harness.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function hec(): Promise<FakeHec> {
  const s = await new FakeHec().start();
  cleanups.push(() => s.close());
  return s;
}

function tokenFile(dir: string, token: string): string {
  const f = path.join(dir, 'hec-token');
  fs.writeFileSync(f, token);
  return f;
}

async function createOutput(yamlOutput: string, dir: string): Promise<Output> {
  return (await startOutput(cleanups, yamlOutput, { dir })).output;
}

const signal = () => AbortSignal.timeout(10_000);

describe('splunk_hec output', () => {
  it('sends event envelopes with the configured fields and the record id, and is ok only once the ack says indexed', async () => {
    const s = await hec();
    const dir = tempDir(cleanups);
    const out = await createOutput(
      `type: splunk_hec\nurl: ${s.url}\ntoken: { file: ${tokenFile(dir, s.token)} }\nindex: audit\nsourcetype: kube:apiserver:audit\nhost: cp-1\nfields: { cluster: prod }\nack: { poll_interval: 20ms }`,
      dir,
    );
    const audit = { kind: 'Event', auditID: 'a-1', stage: 'ResponseComplete', stageTimestamp: '2026-12-07T10:00:00.250000Z' };
    const records = [{ id: 'a-1:ResponseComplete', timeMs: 0, input: 'audit', json: JSON.stringify(audit) }, ...makeRecords(2)];
    expect(await out.send(outbound(records), signal())).toEqual({ kind: 'ok' });
    expect(s.ackPolls).toBeGreaterThan(0);
    // The health endpoint was asked at start.
    expect(s.healthChecks).toBe(1);
    expect(s.indexed).toHaveLength(3);
    expect(s.indexed[0]).toEqual({
      time: Date.parse('2026-12-07T10:00:00.250Z') / 1000,
      host: 'cp-1',
      sourcetype: 'kube:apiserver:audit',
      index: 'audit',
      source: 'audit',
      fields: { cluster: 'prod', ktrail_id: 'a-1:ResponseComplete' },
      event: audit,
    });
    expect(s.indexed.map((e) => e.fields?.ktrail_id)).toEqual(['a-1:ResponseComplete', 'rec-0', 'rec-1']);
  });

  it('takes the time from stageTimestamp, an Event\'s lastTimestamp or eventTime, else the record time', () => {
    const r = (json: object, timeMs = 5000) => ({ id: 'x', timeMs, input: 'i', json: JSON.stringify(json) });
    expect(eventTimeSeconds(r({ stageTimestamp: '2026-01-01T00:00:01.5Z' }))).toBe(Date.parse('2026-01-01T00:00:01.5Z') / 1000);
    expect(eventTimeSeconds(r({ lastTimestamp: '2026-01-01T00:00:02Z' }))).toBe(Date.parse('2026-01-01T00:00:02Z') / 1000);
    expect(eventTimeSeconds(r({ eventTime: '2026-01-01T00:00:03.000001Z' }))).toBe(Date.parse('2026-01-01T00:00:03.000Z') / 1000);
    expect(eventTimeSeconds(r({ other: 1 }, 7000))).toBe(7);
  });

  it('a token without indexer acknowledgement (no ackId) is retried with a message that says so, never counted as delivered', async () => {
    const s = await hec();
    s.ackRequired = false;
    const dir = tempDir(cleanups);
    const out = await createOutput(`type: splunk_hec\nurl: ${s.url}\ntoken: { file: ${tokenFile(dir, s.token)} }`, dir);
    expect(await out.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'retryable', code: 'malformed_response', detail: expect.stringContaining('ack.enabled: false') });
  });

  it('an ack that never comes is a retryable ack_timeout; busy is retryable; an incorrect index is permanent with its HEC code', async () => {
    const s = await hec();
    const dir = tempDir(cleanups);
    const out = await createOutput(`type: splunk_hec\nurl: ${s.url}\ntoken: { file: ${tokenFile(dir, s.token)} }\nindex: nope\nack: { timeout: 200ms, poll_interval: 20ms }`, dir);
    s.loseAcks = 1;
    s.indexes = ['nope'];
    expect(await out.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'retryable', code: 'ack_timeout' });
    s.busy = 1;
    expect(await out.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'retryable', code: 'hec_server_busy' });
    s.indexes = ['audit'];
    expect(await out.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'permanent', code: 'hec_incorrect_index', detail: expect.stringContaining('HEC code 7: Incorrect index') });
  });

  it.each([
    ['with indexer acknowledgement: the events before it are sent again (their ack is unknown)', true, [0, 2]],
    ['without it: the events before it count as delivered', false, [2]],
  ])('an invalid event is refused for good alone; %s', async (_, ack, resent) => {
    const s = await hec();
    s.ackRequired = ack;
    const dir = tempDir(cleanups);
    const out = await createOutput(`type: splunk_hec\nurl: ${s.url}\ntoken: { file: ${tokenFile(dir, s.token)} }\nack: { enabled: ${ack}, poll_interval: 20ms }`, dir);
    const records = makeRecords(3);
    // A blank event: HEC answers 400 code 13 naming it (invalid-event-number 1).
    const o = await out.send(outbound([records[0]!, { ...records[1]!, json: 'null' }, records[2]!]), signal());
    expect(o.kind).toBe('partial');
    const failures = o.kind === 'partial' ? o.failures : [];
    expect(failures.filter((f) => f.kind === 'permanent')).toEqual([{ index: 1, kind: 'permanent', code: 'hec_event_field_blank', detail: expect.stringContaining('HEC code 13') }]);
    expect(failures.filter((f) => f.kind === 'retryable').map((f) => f.index)).toEqual(resent);
  });

  it('through the agent: a wrong token keeps everything spooled until the token file is fixed, then all is delivered once', async () => {
    const s = await hec();
    const dir = tempDir(cleanups);
    const token = tokenFile(dir, 'wrong');
    const { agent, metrics } = makeAgent(
      `service: { state_dir: ${dir}, shutdown_timeout: 2s }\ninputs: { gen: { type: fake, total: 50, batch: 10 } }\noutputs:\n  hec:\n    type: splunk_hec\n    url: ${s.url}\n    token: { file: ${token} }\n    ack: { poll_interval: 20ms }\n    retry: { initial_backoff: 20ms, max_backoff: 50ms }\n    batch: { flush_interval: 20ms }`,
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    await until(async () => (await counterValue(metrics, 'ktrail_output_retries_total', { output: 'hec', reason: 'hec_invalid_token' })) >= 2, 10_000, 'refused token retried');
    expect(s.indexed).toHaveLength(0);
    expect(agent.spool.records).toBe(50);
    fs.writeFileSync(token, s.token);
    await until(() => agent.spool.records === 0, 10_000, 'everything delivered after the token is fixed');
    expect(new Set(s.indexed.map((e) => e.fields?.ktrail_id)).size).toBe(50);
    expect(s.indexed).toHaveLength(50);
    expect(deadLetters(dir)).toEqual([]);
  });

  it('SIGKILLed 4 times while requests wait for their acks: after restarts every record is indexed, repeats only as the same ids', async () => {
    const s = await hec();
    s.ackDelayMs = 150;
    const dir = tempDir(cleanups);
    const total = 4000;
    const cfg = auditFileConfig(dir, total, `splunk: { type: splunk_hec, url: ${JSON.stringify(s.url)}, token: { file: ${JSON.stringify(tokenFile(dir, s.token))} }, ack: { poll_interval: 20ms }, batch: { max_records: 100, flush_interval: 50ms } }`);
    await sigkillRestarts(cleanups, cfg, 4, (k) => s.eventRequests > k * 6 + 3);
    const last = startChild(cleanups, cfg);
    const want = Array.from({ length: total }, (_, i) => `${auditId(i)}:ResponseComplete`);
    await until(() => new Set(s.indexed.map((e) => e.fields?.ktrail_id)).size >= total, 30_000, 'every record indexed');
    last.kill('SIGTERM');
    expect(await last.exited).toBe(0);
    const ids = s.indexed.map((e) => e.fields?.ktrail_id);
    const unique = new Set(ids);
    expect(want.filter((id) => !unique.has(id))).toEqual([]);
    expect([...unique].filter((id) => !want.includes(id!))).toEqual([]);
    // Each repeat is a whole event sent again under its id, not a different event.
    for (const e of s.indexed) expect((e.event as { auditID: string }).auditID).toBe(e.fields!.ktrail_id!.split(':')[0]);
  }, 90_000);
});
