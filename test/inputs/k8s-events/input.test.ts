import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { k8sEventsInput } from '../../../src/inputs/k8s-events/plugin.ts';
import { Spool } from '../../../src/spool/spool.ts';
import {
  addEvent,
  duplicates,
  RecordingGate,
  idOf,
  metricValue,
  startAgent,
  startKube,
  tempDir,
  until,
  writeKubeconfig,
  type InProcessAgent,
  type KubeApiServer,
} from './support.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function kubeServer(opts: Parameters<typeof startKube>[0] = {}): Promise<KubeApiServer> {
  const kube = await startKube(opts);
  cleanups.push(() => kube.close());
  return kube;
}

function dir(): string {
  const d = tempDir();
  cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

async function agentOn(stateDir: string, kubeconfig: string, extra = '', opts: { gate?: RecordingGate; spoolMaxBytes?: string } = {}): Promise<InProcessAgent> {
  const a = await startAgent(
    stateDir,
    [`    kubeconfig: ${kubeconfig}`, '    backoff: { initial: 50ms, max: 500ms }', ...(extra ? [extra] : [])].join('\n'),
    opts,
  );
  cleanups.push(() => a.agent.stop());
  return a;
}

describe('k8s_events input (in process, emulated API)', () => {
  it('lists, then watches: every event version once, count bumps one record each, DELETED not emitted', async () => {
    const kube = await kubeServer({ token: 't0' });
    const d = dir();
    const before = [addEvent(kube), addEvent(kube, 'kube-system', { type: 'Warning' })];
    const kc = writeKubeconfig(d, kube.url, { token: 't0' });
    const { gate, metrics } = await agentOn(path.join(d, 'state'), kc, '    page_size: 1');
    await until(() => gate.delivered.length === 2, 10_000, 'listed events delivered');
    expect(new Set(gate.delivered)).toEqual(new Set(before.map(idOf)));
    await kube.waitForWatches(1);
    const e = addEvent(kube);
    const b1 = kube.bumpEvent('default', e.metadata.name);
    const b2 = kube.bumpEvent('default', e.metadata.name);
    kube.delete('events', 'default', before[0]!.metadata.name);
    await until(() => gate.delivered.length === 5, 10_000, 'watched versions delivered');
    await new Promise((r) => setTimeout(r, 300));
    expect(gate.delivered.slice(2)).toEqual([idOf(e), idOf(b1), idOf(b2)]);
    expect(duplicates(gate.delivered)).toEqual([]);
    expect(await metricValue(metrics, 'ktrail_k8s_events_emitted_total')).toBe(5);
    expect(await metricValue(metrics, 'ktrail_k8s_events_relists_total', { reason: 'start' })).toBe(1);
  });

  it('a restart emits only the versions written since; the cursor and seen-set are in the state DB', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const state = path.join(d, 'state');
    for (let i = 0; i < 5; i++) addEvent(kube);
    const gate = new RecordingGate();
    const a1 = await agentOn(state, kc, '', { gate });
    await until(() => gate.delivered.length === 5);
    const e = addEvent(kube);
    await until(() => gate.delivered.length === 6);
    await a1.agent.stop();
    // While down: one bump of a known event, one new event.
    const b = kube.bumpEvent('default', e.metadata.name);
    const n = addEvent(kube);
    const a2 = await agentOn(state, kc, '', { gate });
    await until(() => gate.delivered.length === 8);
    await new Promise((r) => setTimeout(r, 300));
    expect(gate.delivered.slice(6).sort()).toEqual([idOf(b), idOf(n)].sort());
    expect(duplicates(gate.delivered)).toEqual([]);
    // The second run resumed the watch from the cursor instead of listing.
    expect(await metricValue(a2.metrics, 'ktrail_k8s_events_relists_total')).toBe(0);
    expect(await metricValue(a2.metrics, 'ktrail_k8s_events_seen_set_size')).toBe(7);
    expect(await metricValue(a2.metrics, 'ktrail_k8s_events_cursor_age_seconds')).toBeLessThan(5);
    expect(await metricValue(a2.metrics, 'ktrail_k8s_events_leader')).toBe(1);
    await a2.agent.stop();
    const spool = new Spool({ stateDir: state, maxBytes: 1e9, readonly: true });
    try {
      const rows = k8sEventsInput.describeState!(spool.db);
      expect(rows.find((r) => r.cursor_rv !== undefined)).toMatchObject({ input: 'events', scope: 'all-namespaces' });
      expect(rows.find((r) => r.seen_set_size !== undefined)).toMatchObject({ input: 'events', seen_set_size: 7 });
    } finally {
      spool.close();
    }
  });

  it('410 Gone on resume → relist deduplicated against the seen-set: no duplicate, no gap reported', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    for (let i = 0; i < 4; i++) addEvent(kube);
    const { gate, metrics } = await agentOn(path.join(d, 'state'), kc, '    page_size: 2');
    await until(() => gate.delivered.length === 4);
    await kube.waitForWatches(1);
    const e = addEvent(kube);
    await until(() => gate.delivered.length === 5);
    // In one tick: the watch ends, more versions are written, and the history they are in is compacted.
    kube.closeAllWatches();
    const b = kube.bumpEvent('default', e.metadata.name);
    const n = addEvent(kube);
    kube.expireHistory();
    await until(() => gate.delivered.length === 7, 10_000, 'versions written during the gap delivered by the relist');
    await until(async () => (await metricValue(metrics, 'ktrail_k8s_events_relists_total', { reason: 'gone' })) === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(gate.delivered.slice(5).sort()).toEqual([idOf(b), idOf(n)].sort());
    expect(duplicates(gate.delivered)).toEqual([]);
    expect(await metricValue(metrics, 'ktrail_k8s_events_gone_total')).toBe(1);
    // The four untouched events; e's listed version is the new bump.
    expect(await metricValue(metrics, 'ktrail_k8s_events_deduplicated_total')).toBe(4);
    expect(await metricValue(metrics, 'ktrail_k8s_events_gaps_total')).toBe(0);
    // Still watching afterwards.
    const after = addEvent(kube);
    await until(() => gate.delivered.includes(idOf(after)));
  });

  it('events expired while the collector was down → a possible gap is reported', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const state = path.join(d, 'state');
    const gate = new RecordingGate();
    const a1 = await agentOn(state, kc, '', { gate });
    await kube.waitForWatches(1);
    const e1 = addEvent(kube);
    await until(() => gate.delivered.length === 1);
    await a1.agent.stop();
    const lost = addEvent(kube);
    // The event TTL (1 h) runs out for everything written so far.
    kube.expireEvents(Date.now() + 3_600_000);
    expect(kube.list('events')).toEqual([]);
    const e3 = addEvent(kube);
    kube.expireHistory();
    const a2 = await agentOn(state, kc, '', { gate });
    await until(() => gate.delivered.length === 2);
    await until(async () => (await metricValue(a2.metrics, 'ktrail_k8s_events_gaps_total', { reason: 'expired' })) === 1);
    expect(gate.delivered).toEqual([idOf(e1), idOf(e3)]);
    expect(gate.delivered).not.toContain(idOf(lost));
  });

  it('mode poll: a paginated list every interval, deduplicated the same way', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const e = [addEvent(kube), addEvent(kube), addEvent(kube)];
    const { gate, metrics } = await agentOn(path.join(d, 'state'), kc, ['    mode: poll', '    interval: 100ms', '    page_size: 2'].join('\n'));
    await until(() => gate.delivered.length === 3);
    const b = kube.bumpEvent('default', e[0]!.metadata.name);
    const n = addEvent(kube);
    await until(() => gate.delivered.length === 5);
    await until(async () => (await metricValue(metrics, 'ktrail_k8s_events_relists_total', { reason: 'poll' })) >= 3);
    expect(gate.delivered.slice(3).sort()).toEqual([idOf(b), idOf(n)].sort());
    expect(duplicates(gate.delivered)).toEqual([]);
    expect(kube.activeWatchCount).toBe(0);
  });

  it('events.k8s.io/v1, a namespace list and a field selector: one cursor per namespace', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const want = [addEvent(kube, 'a', { type: 'Warning' }), addEvent(kube, 'b', { type: 'Warning' })];
    addEvent(kube, 'a', { type: 'Normal' });
    addEvent(kube, 'c', { type: 'Warning' });
    const state = path.join(d, 'state');
    const { gate, agent } = await agentOn(state, kc, ['    api: events.k8s.io/v1', '    namespaces: [a, b]', '    field_selector: type=Warning'].join('\n'));
    await until(() => gate.delivered.length === 2);
    await kube.waitForWatches(2);
    const w = addEvent(kube, 'b', { type: 'Warning' });
    addEvent(kube, 'b', { type: 'Normal' });
    await until(() => gate.delivered.length === 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(new Set(gate.delivered)).toEqual(new Set([...want, w].map(idOf)));
    const lines = agent.spool.db.prepare('SELECT count(*) AS n FROM k8s_events_cursor WHERE input = ?').get('events') as { n: number };
    expect(lines.n).toBe(2);
    for (const q of kube.requests.filter((r) => r.path.includes('/events'))) {
      expect(q.path).toMatch(/^\/apis\/events\.k8s\.io\/v1\/namespaces\/(a|b)\/events$/);
      expect(q.query.fieldSelector).toBe('type=Warning');
    }
  });

  it('records are the event object with apiVersion and kind, id uid:resourceVersion, time from the latest observation', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const e = kube.addEvent({
      namespace: 'default',
      reason: 'BackOff',
      message: 'Back-off restarting failed container',
      type: 'Warning',
      involvedObject: { kind: 'Pod', name: 'web', namespace: 'default' },
      lastTimestamp: '2030-01-02T03:04:05Z',
      firstTimestamp: '2030-01-01T00:00:00Z',
    });
    const { gate } = await agentOn(path.join(d, 'state'), kc, '    api: events.k8s.io/v1');
    await until(() => gate.delivered.length === 1);
    const rec = gate.records[0]!;
    expect(rec.id).toBe(idOf(e));
    expect(rec.timeMs).toBe(Date.parse('2030-01-02T03:04:05Z'));
    const doc = JSON.parse(rec.json) as Record<string, unknown>;
    // A listed item has no apiVersion/kind of its own; the record says which shape it is.
    expect(doc).toMatchObject({ apiVersion: 'events.k8s.io/v1', kind: 'Event', note: 'Back-off restarting failed container', regarding: { name: 'web' } });
    expect(doc.metadata).toMatchObject({ uid: e.metadata.uid, resourceVersion: e.metadata.resourceVersion });
    // A watched version of the same event has the same shape.
    const b = kube.bumpEvent('default', e.metadata.name);
    await until(() => gate.records.length === 2);
    expect(gate.records[1]!.id).toBe(idOf(b));
    expect(JSON.parse(gate.records[1]!.json)).toMatchObject({ apiVersion: 'events.k8s.io/v1', kind: 'Event', deprecatedCount: 2 });
  });

  it('backpressure: a full spool stops the watch from being read; everything arrives once the output drains', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const gate = new RecordingGate();
    gate.set('closed');
    const { metrics } = await agentOn(path.join(d, 'state'), kc, '', { gate, spoolMaxBytes: '16KiB' });
    await kube.waitForWatches(1);
    const total = 400;
    const all: string[] = [];
    for (let i = 0; i < total; i++) {
      all.push(idOf(addEvent(kube)));
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
    }
    await until(async () => (await metricValue(metrics, 'ktrail_spool_full_waits_total')) >= 1, 10_000, 'input paused by the spool');
    await new Promise((r) => setTimeout(r, 300));
    const receivedWhileFull = await metricValue(metrics, 'ktrail_k8s_events_received_total');
    expect(receivedWhileFull).toBeLessThan(total);
    await new Promise((r) => setTimeout(r, 300));
    expect(await metricValue(metrics, 'ktrail_k8s_events_received_total')).toBe(receivedWhileFull);
    gate.set('open');
    await until(() => gate.delivered.length === total, 15_000, 'all delivered after the output drained');
    expect(new Set(gate.delivered)).toEqual(new Set(all));
    expect(duplicates(gate.delivered)).toEqual([]);
  });

  it('a rotated token file is read again: a 401 re-reads it once and the watch continues', async () => {
    const kube = await kubeServer({ token: 'token-1' });
    const d = dir();
    const tokenFile = path.join(d, 'token');
    fs.writeFileSync(tokenFile, 'token-1\n');
    const kc = writeKubeconfig(d, kube.url, { tokenFile });
    const { gate } = await agentOn(path.join(d, 'state'), kc);
    await kube.waitForWatches(1);
    addEvent(kube);
    await until(() => gate.delivered.length === 1);
    // Rotate: the file gets the new token (same length, same mtime as before, so only a 401 makes it re-read).
    const st = fs.statSync(tokenFile);
    fs.writeFileSync(tokenFile, 'token-2\n');
    fs.utimesSync(tokenFile, st.atimeMs / 1000, st.mtimeMs / 1000);
    expect(fs.statSync(tokenFile).mtimeMs).toBe(st.mtimeMs);
    kube.setToken('token-2');
    kube.closeAllWatches();
    addEvent(kube);
    await until(() => gate.delivered.length === 2, 10_000, 'event after rotation delivered');
    const unauthorized = kube.requests.filter((r) => r.status === 401);
    expect(unauthorized.length).toBe(1);
  });

  it('watch ends are resumed with a jittered pause, never a tight loop; a down API backs off', async () => {
    const kube = await kubeServer({ watchTimeoutSeconds: 1 });
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const { metrics, agent } = await agentOn(path.join(d, 'state'), kc);
    await kube.waitForWatches(1);
    await new Promise((r) => setTimeout(r, 2500));
    const timeouts = await metricValue(metrics, 'ktrail_k8s_events_watch_restarts_total', { reason: 'timeout' });
    expect(timeouts).toBeGreaterThanOrEqual(1);
    expect(timeouts).toBeLessThanOrEqual(3);
    kube.requests.length = 0;
    kube.setDown(true, '503');
    await new Promise((r) => setTimeout(r, 2000));
    // 50 ms doubling up to 500 ms: about 8 tries in 2 s; a tight loop would make thousands.
    expect(kube.requests.length).toBeGreaterThan(2);
    expect(kube.requests.length).toBeLessThan(16);
    await until(() => !agent.readiness().ready, 5000, 'unhealthy while the API fails');
    kube.setDown(false);
    addEvent(kube);
    await until(async () => (await metricValue(metrics, 'ktrail_k8s_events_emitted_total')) === 1, 10_000, 'recovered');
    await until(() => agent.readiness().ready, 5000, 'healthy again');
  });

  it('a rejected field selector makes the input unhealthy with the API message', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const { agent } = await agentOn(path.join(d, 'state'), kc, '    field_selector: spec.nodeName=n1');
    await until(() => !agent.readiness().ready, 5000);
    expect(agent.readiness().checks['input:events']).toMatchObject({ ok: false, detail: expect.stringContaining('400') });
  });

  it('leader election in process: the standby is healthy and idle, a released Lease hands over without a repeat', async () => {
    const kube = await kubeServer();
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const le = (id: string) =>
      ['    leader_election:', '      enabled: true', `      identity: ${id}`, '      lease_duration: 2s', '      renew_deadline: 1500ms', '      retry_period: 200ms'].join('\n');
    const gate = new RecordingGate();
    const a = await agentOn(path.join(d, 'a'), kc, le('a'), { gate });
    await until(async () => (await metricValue(a.metrics, 'ktrail_k8s_events_leader')) === 1, 10_000, 'a leads');
    const b = await agentOn(path.join(d, 'b'), kc, le('b'), { gate });
    const first = [addEvent(kube), addEvent(kube)];
    await until(() => gate.delivered.length === 2);
    expect(await metricValue(b.metrics, 'ktrail_k8s_events_leader')).toBe(0);
    expect(b.agent.readiness().checks['input:events']).toMatchObject({ ok: true, detail: expect.stringContaining('standby') });
    expect(a.agent.readiness().checks['input:events']).toMatchObject({ ok: true, detail: 'leader' });
    // The Lease mirror is the delivered state, written at the renewal after the acks: it may trail the sink by a moment.
    const mirror = () => kube.get('leases', 'default', 'ktrail-events-events')?.metadata.annotations?.['ktrail.io/k8s-events-cursor'];
    await until(() => mirror() !== undefined, 5000, 'cursor mirrored into the Lease');
    expect(mirror()).toContain('"cursors"');
    await a.agent.stop();
    await until(async () => (await metricValue(b.metrics, 'ktrail_k8s_events_leader')) === 1, 5000, 'b leads');
    const next = addEvent(kube);
    await until(() => gate.delivered.length === 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(new Set(gate.delivered)).toEqual(new Set([...first.map(idOf), idOf(next)]));
    expect(gate.delivered.at(-1)).toBe(idOf(next));
    expect(duplicates(gate.delivered)).toEqual([]);
    // b resumed from the Lease cursor: it did not list again.
    expect(await metricValue(b.metrics, 'ktrail_k8s_events_relists_total')).toBe(0);
  });
});

