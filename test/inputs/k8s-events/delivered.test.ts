import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveredMirror, encodeMirror, MAX_SNAPSHOTS } from '../../../src/inputs/k8s-events/delivered.ts';
import { MIRROR_ANNOTATION } from '../../../src/inputs/k8s-events/leader.ts';
import { EventsState, STATE_MIGRATIONS, STATE_OWNER, type CursorMirror } from '../../../src/inputs/k8s-events/state.ts';
import { Spool } from '../../../src/spool/spool.ts';
import { addEvent, idOf, metricValue, RecordingGate, sleep, startAgent, startKube, tempDir, until, writeKubeconfig } from './support.ts';

/**
 * The Lease carries the delivered cursor: what every output acknowledged,
 * never what is only committed to this instance's spool.
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dir(): string {
  const d = tempDir();
  cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function openSpool(): { spool: Spool; state: EventsState } {
  const spool = new Spool({ stateDir: dir(), maxBytes: 1 << 30 });
  cleanups.push(() => spool.close());
  spool.migrate(STATE_OWNER, STATE_MIGRATIONS);
  return { spool, state: new EventsState(spool.db, 'events') };
}

/** One commit as the input makes it: a batch for two outputs, the state, and the batch id seen inside the transaction. */
function commit(spool: Spool, state: EventsState, delivered: DeliveredMirror, uid: string, rv: string): number {
  let lastBatchId = 0;
  const r = spool.append({
    input: 'events',
    records: [{ id: `${uid}:${rv}`, timeMs: 1, input: 'events', json: '{}' }],
    routes: ['es', 's3'],
    checkpoint: () => {
      state.commit([{ uid, scope: '*', resourceVersion: rv }], new Map([['*', rv]]), Date.now());
      lastBatchId = delivered.lastBatchId();
    },
  });
  delivered.committed(lastBatchId);
  return r.batchId!;
}

describe('DeliveredMirror', () => {
  it('moves only when every output acknowledged everything up to a commit', () => {
    const { spool, state } = openSpool();
    const d = new DeliveredMirror(spool.db, 'events', state, undefined);
    expect(d.current().cursors).toEqual({});
    const b1 = commit(spool, state, d, 'a', '10');
    const b2 = commit(spool, state, d, 'b', '11');
    expect(d.current().cursors).toEqual({});
    expect(d.caughtUp()).toBe(false);
    // One output acks both, the other only the first: only the first commit is delivered.
    spool.ack('es', [b1, b2]);
    expect(d.current().cursors).toEqual({});
    spool.ack('s3', [b1]);
    expect(d.current().cursors).toEqual({ '*': '10' });
    spool.ack('s3', [b2]);
    expect(d.current().cursors).toEqual({ '*': '11' });
    expect(d.caughtUp()).toBe(true);
  });

  it('a restart with batches still in the spool keeps the Lease mirror until they are acknowledged', () => {
    const { spool, state } = openSpool();
    const d0 = new DeliveredMirror(spool.db, 'events', state, undefined);
    const b1 = commit(spool, state, d0, 'a', '10');
    const found: CursorMirror = { v: 1, cursors: { '*': '7' }, seen: {}, at: 1 };
    const d = new DeliveredMirror(spool.db, 'events', state, found);
    expect(d.current().cursors).toEqual({ '*': '7' });
    spool.ack('es', [b1]);
    spool.ack('s3', [b1]);
    expect(d.current().cursors).toEqual({ '*': '10' });
    // Nothing pending at start: the committed state is the delivered one.
    expect(new DeliveredMirror(spool.db, 'events', state, found).current().cursors).toEqual({ '*': '10' });
  });

  it('memory stays bounded while outputs lag; thinning only coarsens the steps', () => {
    const { spool, state } = openSpool();
    const d = new DeliveredMirror(spool.db, 'events', state, undefined);
    const ids: number[] = [];
    for (let i = 0; i < MAX_SNAPSHOTS * 3; i++) ids.push(commit(spool, state, d, `u${i}`, String(100 + i)));
    spool.ack('es', ids);
    spool.ack('s3', ids.slice(0, MAX_SNAPSHOTS));
    const mid = Number(d.current().cursors['*']);
    expect(mid).toBeGreaterThanOrEqual(100);
    expect(mid).toBeLessThanOrEqual(100 + MAX_SNAPSHOTS - 1);
    spool.ack('s3', ids.slice(MAX_SNAPSHOTS));
    expect(d.current().cursors).toEqual({ '*': String(100 + MAX_SNAPSHOTS * 3 - 1) });
  });

  it('the annotation is bounded: past the bound the oldest uncovered seen entries are left out', () => {
    const list = Array.from({ length: 3000 }, (_, i) => `uid-${String(i).padStart(32, '0')}=${5000 - i}`).join(',');
    const m: CursorMirror = { v: 1, cursors: { '*': '1' }, seen: { '*': list }, at: 1 };
    const text = encodeMirror(m, 32 * 1024);
    expect(text.length).toBeLessThanOrEqual(32 * 1024);
    const kept = (JSON.parse(text) as CursorMirror).seen['*']!.split(',');
    expect(kept.length).toBeGreaterThan(100);
    // The most recent (first) entries are the ones kept.
    expect(kept).toEqual(list.split(',').slice(0, kept.length));
    expect(encodeMirror({ ...m, seen: {} }, 32 * 1024)).toBe(JSON.stringify({ ...m, seen: {} }));
  });
});

describe('the Lease mirror of a running leader', () => {
  it('no output acknowledges for a while → the Lease cursor does not move; once they do, it catches up', async () => {
    const kube = await startKube();
    cleanups.push(() => kube.close());
    const d = dir();
    const kc = writeKubeconfig(d, kube.url);
    const gate = new RecordingGate();
    const input = [
      `    kubeconfig: ${kc}`,
      '    backoff: { initial: 50ms, max: 500ms }',
      '    leader_election:',
      '      enabled: true',
      '      identity: a',
      '      lease_duration: 2s',
      '      renew_deadline: 1500ms',
      '      retry_period: 200ms',
    ].join('\n');
    const a = await startAgent(path.join(d, 'state'), input, { gate });
    cleanups.push(() => a.agent.stop());
    const cursor = () => {
      const text = kube.get('leases', 'default', 'ktrail-events-events')?.metadata.annotations?.[MIRROR_ANNOTATION];
      return text === undefined ? undefined : (JSON.parse(text) as CursorMirror).cursors['*'];
    };
    await until(() => cursor() !== undefined, 10_000, 'list cursor mirrored');
    const before = cursor();
    gate.set('closed');
    const events = Array.from({ length: 20 }, () => addEvent(kube));
    await until(async () => (await metricValue(a.metrics, 'ktrail_k8s_events_emitted_total')) === 20, 10_000, 'committed to the spool');
    // Several renewals (each writes the mirror) while nothing is acknowledged.
    for (let i = 0; i < 8; i++) {
      await sleep(200);
      expect(cursor()).toBe(before);
    }
    gate.set('open');
    const last = Number(events.at(-1)!.metadata.resourceVersion);
    await until(() => Number(cursor()) >= last, 10_000, 'Lease cursor after the acks');
    expect(new Set(gate.delivered)).toEqual(new Set(events.map(idOf)));
  });
});
