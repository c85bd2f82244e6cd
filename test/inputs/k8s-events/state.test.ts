import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventTimeMs, isNewVersion, toRecord } from '../../../src/inputs/k8s-events/convert.ts';
import { Committer } from '../../../src/inputs/k8s-events/committer.ts';
import { adoptMirror, defaultLeaseName, MIRROR_ANNOTATION } from '../../../src/inputs/k8s-events/leader.ts';
import { EventsState, parseMirror, STATE_MIGRATIONS, STATE_OWNER, describeEventsState } from '../../../src/inputs/k8s-events/state.ts';
import { Spool } from '../../../src/spool/spool.ts';
import type { InputContext } from '../../../src/plugin.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics } from '../../../src/telemetry/metrics.ts';
import { tempDir } from './support.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function state(input = 'events'): { state: EventsState; spool: Spool } {
  const dir = tempDir();
  const spool = new Spool({ stateDir: path.join(dir, 'state'), maxBytes: 1e9 });
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => spool.close());
  spool.migrate(STATE_OWNER, STATE_MIGRATIONS);
  return { state: new EventsState(spool.db, input), spool };
}

describe('emission rule', () => {
  it('a version is new unless it was the last emitted (or older), or at/below the cursor', () => {
    expect(isNewVersion('105', undefined, undefined)).toBe(true);
    expect(isNewVersion('105', '105', undefined)).toBe(false);
    expect(isNewVersion('105', '99', undefined)).toBe(true); // count bump: 99 → 105, numeric not lexical
    expect(isNewVersion('99', '105', undefined)).toBe(false);
    expect(isNewVersion('105', undefined, '105')).toBe(false);
    expect(isNewVersion('106', undefined, '105')).toBe(true);
    expect(isNewVersion('1000', undefined, '999')).toBe(true);
    // Opaque resourceVersions are only compared for equality.
    expect(isNewVersion('abc', 'abd', '999')).toBe(true);
    expect(isNewVersion('abc', 'abc', undefined)).toBe(false);
  });

  it('record: id uid:rv, time from the latest observation with fallbacks, apiVersion/kind added when missing', () => {
    const base = { metadata: { uid: 'u1', resourceVersion: '7', creationTimestamp: '2030-01-01T00:00:00Z' } };
    expect(eventTimeMs({ ...base, eventTime: '2030-01-01T00:00:01.000000Z', series: { lastObservedTime: '2030-01-01T00:00:09.500000Z' } })).toBe(
      Date.parse('2030-01-01T00:00:09.5Z'),
    );
    expect(eventTimeMs({ ...base, lastTimestamp: '2030-01-01T00:00:05Z', eventTime: null })).toBe(Date.parse('2030-01-01T00:00:05Z'));
    expect(eventTimeMs({ ...base, deprecatedLastTimestamp: '2030-01-01T00:00:06Z' })).toBe(Date.parse('2030-01-01T00:00:06Z'));
    expect(eventTimeMs({ ...base, firstTimestamp: '2030-01-01T00:00:02Z', lastTimestamp: null })).toBe(Date.parse('2030-01-01T00:00:02Z'));
    expect(eventTimeMs(base)).toBe(Date.parse('2030-01-01T00:00:00Z'));
    expect(eventTimeMs({}, 123)).toBe(123);
    const r = toRecord({ ...base, reason: 'X' }, 'core/v1', 'events')!;
    expect(r.id).toBe('u1:7');
    expect(r.doc).toMatchObject({ apiVersion: 'v1', kind: 'Event', reason: 'X' });
    const watched = toRecord({ apiVersion: 'v1', kind: 'Event', ...base }, 'core/v1', 'events')!;
    expect(Object.keys(watched.doc).slice(0, 2)).toEqual(['apiVersion', 'kind']);
    expect(toRecord({ metadata: { uid: 'u' } }, 'core/v1', 'events')).toBeUndefined();
  });
});

describe('EventsState (SQLite)', () => {
  it('commits seen entries and cursors together, prunes by age, describes itself for `ktrail status`', () => {
    const { state: s, spool } = state();
    spool.db.transaction(() => s.commit([{ uid: 'a', scope: '*', resourceVersion: '10' }], new Map([['*', '12']]), 1000))();
    spool.db.transaction(() => s.commit([{ uid: 'b', scope: '*', resourceVersion: '14' }, { uid: 'a', scope: '*', resourceVersion: '15' }], new Map([['*', '15']]), 5000))();
    expect(s.lastEmitted('a')).toBe('15');
    expect(s.cursor('*')).toMatchObject({ resourceVersion: '15', updatedMs: 5000, advancedMs: 5000 });
    spool.db.transaction(() => s.commit([], new Map([['*', '15']]), 9000))();
    expect(s.cursor('*')).toMatchObject({ updatedMs: 9000, advancedMs: 5000 });
    expect(s.size()).toBe(2);
    expect(describeEventsState(spool.db)).toEqual([
      { input: 'events', scope: 'all-namespaces', cursor_rv: '15', cursor_advanced: new Date(5000).toISOString() },
      { input: 'events', seen_set_size: 2, last_update: new Date(9000).toISOString() },
    ]);
    expect(s.prune(5001)).toBe(2);
    expect(s.size()).toBe(0);
  });

  it('the Lease mirror carries cursors and only the emitted versions the cursor does not cover, bounded', () => {
    const { state: s, spool } = state();
    const seen = Array.from({ length: 30 }, (_, i) => ({ uid: `u${i}`, scope: 'ns1', resourceVersion: String(100 + i) }));
    spool.db.transaction(() => s.commit(seen, new Map([['ns1', '119']]), 1000))();
    const m = s.mirror(2000);
    expect(m.cursors).toEqual({ ns1: '119' });
    expect(m.seen.ns1!.split(',').sort()).toEqual(Array.from({ length: 10 }, (_, i) => `u${20 + i}=${120 + i}`).sort());
    expect(s.mirror(2000, 3).seen.ns1!.split(',')).toHaveLength(3);
    expect(parseMirror(JSON.stringify(m))).toEqual(m);
    expect(parseMirror('not json')).toBeUndefined();
    expect(parseMirror('{"v":2}')).toBeUndefined();
  });

  it('a new leader adopts the newer cursor (its own or the Lease one) and merges the mirrored seen entries', () => {
    const { state: s, spool } = state();
    spool.db.transaction(() => s.commit([{ uid: 'x', scope: '*', resourceVersion: '50' }], new Map([['*', '40'], ['old', '90']]), 1000))();
    const mirror = { v: 1, cursors: { '*': '60', old: '80', fresh: '70' }, seen: { '*': 'x=45,y=65,z=66' }, at: 2000 };
    const lease = { metadata: { name: 'l', annotations: { [MIRROR_ANNOTATION]: JSON.stringify(mirror) } } };
    expect(adoptMirror(lease, s, 3000)).toEqual({ found: true, scopes: ['*', 'fresh'], mirror });
    expect(s.cursor('*')?.resourceVersion).toBe('60');
    expect(s.cursor('old')?.resourceVersion).toBe('90');
    expect(s.cursor('fresh')?.resourceVersion).toBe('70');
    expect(s.lastEmitted('x')).toBe('50');
    expect(s.lastEmitted('y')).toBe('65');
    expect(s.lastEmitted('z')).toBe('66');
    expect(adoptMirror({ metadata: { name: 'l' } }, s)).toEqual({ found: false, scopes: [], mirror: undefined });
    expect(defaultLeaseName('Events_Prod')).toBe('ktrail-events-events-prod');
  });
});

describe('Committer', () => {
  function context(spool: Spool): InputContext {
    const metrics = createMetrics();
    return {
      name: 'events',
      log: createLogger('silent'),
      telemetry: new ComponentTelemetry(metrics, 'input', 'events', 'k8s_events'),
      metrics,
      nodeName: 'n',
      stateDir: '/nonexistent',
      state: { db: spool.db, migrate: (o, steps) => spool.migrate(o, steps) },
      signal: new AbortController().signal,
      emit: async (batch) => {
        const records = batch.records.map((r) => ({ id: r.id, timeMs: r.timeMs, input: 'events', json: r.encode() }));
        const res = spool.append({ input: 'events', records, routes: ['out'], checkpoint: batch.checkpoint });
        return { committed: res.batchId !== undefined ? records.length : 0, droppedFull: 0 };
      },
    };
  }
  const ev = (uid: string, rv: string) => ({ metadata: { uid, resourceVersion: rv, namespace: 'default' } });

  it('the fence runs inside the transaction: a lost lease rolls the records and the seen-set back together', async () => {
    const { state: s, spool } = state();
    let leader = false;
    const c = new Committer({
      ctx: context(spool),
      state: s,
      api: 'core/v1',
      flushIntervalMs: 0,
      maxBatchRecords: 100,
      fence: () => {
        if (!leader) throw new Error('not the leader');
      },
    });
    await expect(c.stage('*', [ev('a', '10')], 'watch', '10')).rejects.toThrow('not the leader');
    expect(spool.records).toBe(0);
    expect(s.lastEmitted('a')).toBeUndefined();
    expect(s.cursor('*')).toBeUndefined();
    leader = true;
    const c2 = new Committer({ ctx: context(spool), state: s, api: 'core/v1', flushIntervalMs: 0, maxBatchRecords: 100, fence: () => undefined });
    await c2.stage('*', [ev('a', '10'), ev('a', '11'), ev('b', '12'), ev('a', '10')], 'watch', '12');
    expect(spool.records).toBe(3);
    expect(spool.readBatch(1).concat(spool.readBatch(2)).map((r) => r.id)).toEqual(['a:10', 'a:11', 'b:12']);
    expect(s.lastEmitted('a')).toBe('11');
    expect(s.cursor('*')?.resourceVersion).toBe('12');
  });

  it('gathering (leader mode): staged versions are deduplicated before the commit and committed within the interval', async () => {
    const { state: s, spool } = state();
    let commits = 0;
    const c = new Committer({ ctx: context(spool), state: s, api: 'core/v1', flushIntervalMs: 100, maxBatchRecords: 100, afterCommit: async () => void commits++ });
    await c.stage('*', [ev('a', '10')], 'list', undefined);
    await new Promise((r) => setTimeout(r, 20));
    expect(commits).toBe(1); // the first commit is not held back
    await c.stage('*', [ev('b', '11')], 'watch', '11');
    await c.stage('*', [ev('b', '11'), ev('c', '12')], 'list', '12');
    expect(commits).toBe(1);
    expect(c.lastEmitted('c')).toBe('12');
    await new Promise((r) => setTimeout(r, 200));
    expect(commits).toBe(2);
    expect(spool.records).toBe(3);
    expect(s.cursor('*')?.resourceVersion).toBe('12');
    c.close();
  });
});
