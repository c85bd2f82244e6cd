import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MIRROR_ANNOTATION } from '../../../src/inputs/k8s-events/leader.ts';
import { Collector, writeCollectorConfig } from './processes.ts';
import { NdjsonSink } from './sink.ts';
import { addEvent, duplicates, EventFlow, idOf, sleep, startKube, tempDir, until, writeKubeconfig, type KubeApiServer } from './support.ts';

/**
 * The real agent as child processes against the emulated API: SIGKILL at
 * random moments, two collectors with one Lease, a leader killed, a gap
 * while everything was down. Sinks keep whole requests, so a request the
 * output re-sent after a crash (same Idempotency-Key and body) is told apart
 * from a record the input emitted twice (its id in two different requests).
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(kubeOpts: Parameters<typeof startKube>[0] = {}) {
  const kube = await startKube(kubeOpts);
  cleanups.push(() => kube.close());
  const dir = tempDir();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = writeKubeconfig(dir, kube.url, { token: 'collector-token' });
  kube.setToken('collector-token');
  return { kube, dir, kubeconfig };
}

async function sink(): Promise<NdjsonSink> {
  const s = await NdjsonSink.start();
  cleanups.push(() => s.close());
  return s;
}

function collector(configFile: string): Collector {
  const c = new Collector(configFile);
  cleanups.push(() => c.kill());
  return c;
}

const LEASE = { leaseName: 'ktrail-events-test', leaseDuration: '3s', renewDeadline: '2s', retryPeriod: '400ms' };
const LEASE_DURATION_MS = 3000;
const RETRY_MS = 400;

function holder(kube: KubeApiServer): string | undefined {
  const lease = kube.get('leases', 'default', LEASE.leaseName) as { spec?: { holderIdentity?: string | null } } | undefined;
  return lease?.spec?.holderIdentity ?? undefined;
}

function mirroredCursor(kube: KubeApiServer): number | undefined {
  const lease = kube.get('leases', 'default', LEASE.leaseName);
  const text = lease?.metadata.annotations?.[MIRROR_ANNOTATION];
  if (!text) return undefined;
  const rv = (JSON.parse(text) as { cursors: Record<string, string> }).cursors['*'];
  return rv === undefined ? undefined : Number(rv);
}

function covered(want: Iterable<string>, got: readonly string[]): boolean {
  const have = new Set(got);
  for (const id of want) if (!have.has(id)) return false;
  return true;
}

const rvOf = (id: string) => Number(id.slice(id.lastIndexOf(':') + 1));

describe('k8s_events input: crashes and leader election (real processes)', () => {
  it('SIGKILL at 10 random moments while events flow: every version delivered, no record emitted twice', async () => {
    const { kube, dir, kubeconfig } = await setup();
    const out = await sink();
    const config = writeCollectorConfig({ dir, kubeconfig, sinkUrl: out.url, extra: ['    page_size: 50'] });
    const flow = new EventFlow(kube);
    // Versions overwritten before the first list cannot be seen by anyone: the flow of bumps starts once it watches.
    for (let i = 0; i < 40; i++) flow.written.push(idOf(addEvent(kube)));
    for (let kill = 0; kill < 10; kill++) {
      const c = collector(config);
      if (kill === 0) {
        await kube.waitForWatches(1, 20_000);
        flow.start(10);
      }
      const before = out.requests.length;
      // Kill while it works: after it delivered something of this run, at a random moment.
      await until(() => out.requests.length > before || c.child.exitCode !== null, 15_000, `run ${kill} delivering`);
      await sleep(Math.random() * 600);
      await c.kill();
    }
    flow.stop();
    const last = collector(config);
    const want = new Set(flow.written);
    await until(() => covered(want, out.rawIds()) || last.child.exitCode !== null, 30_000, 'every version delivered');
    expect(await last.terminate()).toBe(0);

    const delivered = new Set(out.rawIds());
    expect([...want].filter((id) => !delivered.has(id))).toEqual([]);
    // The seen-set is committed with the records: the input never emitted a version twice…
    expect(duplicates(out.idsOfDistinctRequests())).toEqual([]);
    // …and raw repeats are whole requests the output re-sent after a kill, at most one per kill.
    expect(out.resentRequests()).toBeLessThanOrEqual(10);
    expect(flow.written.length).toBeGreaterThan(200);
  }, 120_000);

  it('two collectors, one Lease: one emits; the leader SIGKILLed → the other takes over within the lease duration from the Lease cursor', async () => {
    const { kube, dir, kubeconfig } = await setup();
    const sinkA = await sink();
    const sinkB = await sink();
    const cfgA = writeCollectorConfig({ dir: path.join(dir, 'a'), kubeconfig, sinkUrl: sinkA.url, leader: { identity: 'collector-a', ...LEASE } });
    const cfgB = writeCollectorConfig({ dir: path.join(dir, 'b'), kubeconfig, sinkUrl: sinkB.url, leader: { identity: 'collector-b', ...LEASE } });
    const flow = new EventFlow(kube);
    const a = collector(cfgA);
    await until(() => holder(kube) === 'collector-a', 15_000, 'a leads');
    await kube.waitForWatches(1, 10_000);
    flow.start(10);
    const b = collector(cfgB);
    await until(() => b.logs('k8s_events input starting').length === 1, 15_000, 'b up (standby)');
    await sleep(1000);
    expect(sinkA.requests.length).toBeGreaterThan(0);
    expect(sinkB.requests.length).toBe(0);

    await a.kill();
    const killedMs = Date.now();
    const cursorAtKill = mirroredCursor(kube)!;
    expect(cursorAtKill).toBeGreaterThan(0);
    await until(() => holder(kube) === 'collector-b', 10_000, 'b takes over');
    const takeoverMs = Date.now() - killedMs;
    // The Lease ends lease_duration after the last renewal b saw (at most a retry period before the
    // kill): b waits that long, and takes it at its next look (every 1–1.5 retry periods). The slack
    // is for timers on a loaded test machine.
    expect(takeoverMs).toBeGreaterThanOrEqual(LEASE_DURATION_MS / 2);
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_DURATION_MS + 2 * RETRY_MS + 1500);
    await sleep(500);
    flow.stop();
    const want = flow.written;
    const all = () => [...sinkA.rawIds(), ...sinkB.rawIds()];
    await until(() => covered(want, all()), 15_000, 'every version delivered by a or b');

    const idsA = sinkA.idsOfDistinctRequests();
    const idsB = sinkB.idsOfDistinctRequests();
    expect(duplicates(idsA)).toEqual([]);
    expect(duplicates(idsB)).toEqual([]);
    // One emitter at a time: everything b sent came after the last thing a sent.
    expect(Math.min(...sinkB.requests.map((r) => r.receivedMs))).toBeGreaterThan(Math.max(...sinkA.requests.map((r) => r.receivedMs)));
    // b started from the Lease cursor with an empty state dir: nothing at or below it again. Only
    // what a committed after its last Lease write (a few ms per commit) can come twice.
    const again = idsB.filter((id) => new Set(idsA).has(id));
    expect(again.filter((id) => rvOf(id) <= cursorAtKill)).toEqual([]);
    expect(idsB.filter((id) => rvOf(id) <= cursorAtKill)).toEqual([]);
    expect(again.length).toBeLessThanOrEqual(1000);
    const leading = b.logs('leading: starting the events collector');
    expect(leading[0]).toMatchObject({ mirror: true, cursorsAdopted: ['*'] });
    if (again.length > 0) console.info(`leader killed between a commit and its Lease write: ${again.length} versions re-emitted`);

    // Graceful handover back: b stops (SIGTERM) → final commit, mirror and release; a takes over at once, without any repeat.
    const a2 = collector(cfgA);
    await until(() => a2.logs('k8s_events input starting').length === 1, 15_000, 'a back (standby)');
    flow.start(10);
    await sleep(500);
    const termMs = Date.now();
    expect(await b.terminate()).toBe(0);
    await until(() => holder(kube) === 'collector-a', 5000, 'a leads again');
    // Released, not expired: a did not wait for the Lease to run out.
    expect(b.logs('lease released')).toHaveLength(1);
    expect(a2.logs('took over an expired lease')).toEqual([]);
    await sleep(500);
    flow.stop();
    const want2 = flow.written;
    await until(() => covered(want2, all()), 15_000, 'every version delivered after the handover');
    const secondRunA = sinkA.distinctRequests().filter((r) => r.receivedMs > termMs).flatMap((r) => r.ids);
    expect(secondRunA.filter((id) => new Set(sinkB.idsOfDistinctRequests()).has(id))).toEqual([]);
    expect(duplicates(sinkA.idsOfDistinctRequests())).toEqual([]);
    await a2.terminate();
  }, 90_000);

  it('events that expired while both collectors were down are reported as a possible gap', async () => {
    const { kube, dir, kubeconfig } = await setup();
    const out = await sink();
    const cfgA = writeCollectorConfig({ dir: path.join(dir, 'a'), kubeconfig, sinkUrl: out.url, leader: { identity: 'collector-a', ...LEASE } });
    const cfgB = writeCollectorConfig({ dir: path.join(dir, 'b'), kubeconfig, sinkUrl: out.url, leader: { identity: 'collector-b', ...LEASE } });
    const a = collector(cfgA);
    const b = collector(cfgB);
    await until(() => holder(kube) !== undefined, 15_000, 'a leader');
    const first = addEvent(kube);
    await until(() => out.rawIds().includes(idOf(first)), 10_000);
    // The Lease carries the delivered cursor; it follows the acks at the next renewal.
    await until(() => (mirroredCursor(kube) ?? 0) >= Number(first.metadata.resourceVersion), 5000, 'delivered cursor mirrored');
    await Promise.all([a.kill(), b.kill()]);
    const lost = addEvent(kube);
    // The event TTL runs out for everything written so far (as after an hour), and etcd compacts.
    kube.expireEvents(Date.now() + 3_600_000);
    const fresh = addEvent(kube);
    kube.expireHistory();
    const b2 = collector(cfgB);
    await until(() => out.rawIds().includes(idOf(fresh)), 15_000, 'the new event delivered by b');
    await until(() => b2.logs('possible gap').length === 1, 5000, 'gap reported');
    expect(b2.logs('possible gap')[0]).toMatchObject({ level: 'warn', scope: '*' });
    expect(out.rawIds()).not.toContain(idOf(lost));
    expect(await b2.terminate()).toBe(0);
  }, 60_000);
});
