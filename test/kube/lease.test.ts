import { afterEach, describe, expect, it } from 'vitest';
import { KubeClient } from '../../src/kube/client.ts';
import { LeaseElector, microTime, type Leadership, type LeaseObject } from '../../src/kube/lease.ts';
import { KubeApiServer } from '../helpers/kube-api-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const LEASE_MS = 1000;
const RENEW_MS = 700;
const RETRY_MS = 100;

async function server(): Promise<KubeApiServer> {
  const kube = await KubeApiServer.start();
  cleanups.push(() => kube.close());
  return kube;
}

function client(kube: KubeApiServer): KubeClient {
  const c = new KubeClient({ server: kube.url, tls: {}, auth: { kind: 'none' }, namespace: undefined, source: 'kubeconfig', origin: 'test' });
  cleanups.push(() => c.close());
  return c;
}

interface Candidate {
  elector: LeaseElector;
  stop: AbortController;
  done: Promise<void>;
  /** [start, end] of each term as leader, wall clock. */
  terms: Array<{ startMs: number; endMs?: number; found: LeaseObject }>;
  state: { n: number };
}

function candidate(
  kube: KubeApiServer,
  identity: string,
  c: KubeClient = client(kube),
  timing: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number; watchForRelease?: boolean } = {
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: RENEW_MS,
    retryPeriodMs: RETRY_MS,
  },
): Candidate {
  const state = { n: 0 };
  const elector = new LeaseElector({
    client: c,
    namespace: 'default',
    name: 'test-lease',
    identity,
    ...timing,
    annotations: () => ({ 'ktrail.io/test-state': `${identity}:${state.n}` }),
  });
  const stop = new AbortController();
  const terms: Candidate['terms'] = [];
  const done = elector.run(stop.signal, async ({ signal, lease }: Leadership) => {
    const term: Candidate['terms'][number] = { startMs: Date.now(), found: lease };
    terms.push(term);
    await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
    term.endMs = Date.now();
  });
  const cand = { elector, stop, done, terms, state };
  cleanups.push(async () => {
    stop.abort();
    await done;
  });
  return cand;
}

function holder(kube: KubeApiServer): string | null | undefined {
  return (kube.get('leases', 'default', 'test-lease') as LeaseObject | undefined)?.spec?.holderIdentity;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('LeaseElector', () => {
  it('exactly one of two candidates leads; it renews and mirrors its annotations', async () => {
    const kube = await server();
    const a = candidate(kube, 'a');
    const b = candidate(kube, 'b');
    await until(() => a.elector.isLeader || b.elector.isLeader);
    const [leader, standby] = a.elector.isLeader ? [a, b] : [b, a];
    await new Promise((r) => setTimeout(r, 1.5 * LEASE_MS));
    expect(leader.elector.isLeader).toBe(true);
    expect(standby.elector.isLeader).toBe(false);
    expect(standby.terms).toEqual([]);
    expect(leader.elector.holds()).toBe(true);
    leader.state.n = 7;
    expect(await leader.elector.sync()).toBe(true);
    const lease = kube.get('leases', 'default', 'test-lease') as LeaseObject;
    expect(lease.spec).toMatchObject({ holderIdentity: leader.elector.identity, leaseDurationSeconds: 1 });
    expect(lease.metadata.annotations?.['ktrail.io/test-state']).toBe(`${leader.elector.identity}:7`);
    expect(lease.spec?.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('stopping releases the lease: the standby takes over at its next try and finds the final annotations', async () => {
    const kube = await server();
    const a = candidate(kube, 'a');
    await until(() => a.elector.isLeader);
    const b = candidate(kube, 'b');
    await new Promise((r) => setTimeout(r, 300));
    a.state.n = 42;
    const stoppedMs = Date.now();
    a.stop.abort();
    await a.done;
    expect(holder(kube)).toBeNull();
    await until(() => b.elector.isLeader);
    expect(Date.now() - stoppedMs).toBeLessThan(LEASE_MS);
    expect(b.terms[0]!.found.metadata.annotations?.['ktrail.io/test-state']).toBe('a:42');
  });

  it('watchForRelease: a standby sees the release through a watch and takes over before its next try', async () => {
    const kube = await server();
    // Tries 2–3 s apart: a takeover well inside that came from the watch, not from a poll.
    const slow = { leaseDurationMs: 10_000, renewDeadlineMs: 6000, retryPeriodMs: 2000, watchForRelease: true };
    const a = candidate(kube, 'a', client(kube), slow);
    await until(() => a.elector.isLeader);
    const b = candidate(kube, 'b', client(kube), slow);
    // b has looked (and is now between tries, watching).
    await until(() => kube.get('leases', 'default', 'test-lease') !== undefined);
    await new Promise((r) => setTimeout(r, 500));
    a.state.n = 5;
    const stoppedMs = Date.now();
    a.stop.abort();
    await a.done;
    await until(() => b.elector.isLeader, 5000);
    expect(Date.now() - stoppedMs).toBeLessThan(1500);
    expect(b.terms[0]!.found.metadata.annotations?.['ktrail.io/test-state']).toBe('a:5');
    // Renewals (holder still set) do not wake it: with a leading, b stays a standby.
    const c = candidate(kube, 'c', client(kube), slow);
    await new Promise((r) => setTimeout(r, 2500));
    expect(c.elector.isLeader).toBe(false);
    expect(b.elector.isLeader).toBe(true);
  });

  it('a leader that cannot renew stops within renew_deadline, before the standby takes over after lease_duration', async () => {
    const kube = await server();
    const aClient = client(kube);
    const a = candidate(kube, 'a', aClient);
    await until(() => a.elector.isLeader);
    const b = candidate(kube, 'b');
    await new Promise((r) => setTimeout(r, 300));
    // a is cut off from the API (a partition: its requests fail, b's do not).
    await aClient.close();
    const cutMs = Date.now();
    await until(() => b.elector.isLeader, 5000);
    const aTerm = a.terms[0]!;
    expect(aTerm.endMs).toBeDefined();
    expect(aTerm.endMs! - cutMs).toBeLessThanOrEqual(RENEW_MS + 300);
    expect(a.elector.holds()).toBe(false);
    // Never two leaders: a had stopped before b began.
    expect(b.terms[0]!.startMs).toBeGreaterThan(aTerm.endMs!);
    expect(b.terms[0]!.startMs - cutMs).toBeGreaterThanOrEqual(LEASE_MS - RETRY_MS);
    const lease = kube.get('leases', 'default', 'test-lease') as LeaseObject;
    expect(lease.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('candidates racing for a missing lease: one create wins, the other gets 409 and stands by', async () => {
    const kube = await server();
    const cands = ['a', 'b', 'c'].map((id) => candidate(kube, id));
    await until(() => cands.some((c) => c.elector.isLeader));
    await new Promise((r) => setTimeout(r, 500));
    expect(cands.filter((c) => c.elector.isLeader)).toHaveLength(1);
    expect(cands.flatMap((c) => c.terms)).toHaveLength(1);
  });

  it('refuses settings where the leader could outlive its lease', () => {
    const c = {} as KubeClient;
    const base = { client: c, namespace: 'n', name: 'l', identity: 'i' };
    expect(() => new LeaseElector({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 1000, retryPeriodMs: 100 })).toThrow(/renewDeadline/);
    expect(() => new LeaseElector({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 500, retryPeriodMs: 500 })).toThrow(/retryPeriod/);
    expect(microTime(Date.UTC(2030, 0, 2, 3, 4, 5, 678))).toBe('2030-01-02T03:04:05.678000Z');
  });
});
