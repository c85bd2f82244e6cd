import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector, writeCollectorConfig } from './processes.ts';
import { NdjsonSink } from './sink.ts';
import { duplicates, EventFlow, sleep, startKube, tempDir, until, writeKubeconfig, type KubeApiServer } from './support.ts';

/**
 * Two collector processes on one Lease (issue #17), with creates and count
 * bumps flowing, the http output at its shipped batch.flush_interval (1 s):
 * at any moment the leader has committed versions it has not sent yet.
 *
 * Each instance has its own sink, so "emitted twice by one instance" (never
 * allowed) is told apart from "re-emitted by the next leader" (allowed only
 * where stated, and then only as the same ids).
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const kube = await startKube();
  cleanups.push(() => kube.close());
  const dir = tempDir();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = writeKubeconfig(dir, kube.url, { token: 'collector-token' });
  kube.setToken('collector-token');
  const sinks: NdjsonSink[] = [];
  const instance = async (name: string, lease: typeof LEASE, identity = `collector-${name}`, flushInterval = '1s') => {
    const out = await NdjsonSink.start();
    cleanups.push(() => out.close());
    sinks.push(out);
    const config = writeCollectorConfig({ dir: path.join(dir, name), kubeconfig, sinkUrl: out.url, flushInterval, leader: { identity, ...lease } });
    return { config, out };
  };
  return { kube, instance, sinks };
}

function start(configFile: string): Collector {
  const c = new Collector(configFile);
  cleanups.push(() => c.kill());
  return c;
}

const LEASE = { leaseName: 'ktrail-events-test', leaseDuration: '3s', renewDeadline: '2s', retryPeriod: '400ms' };

function holder(kube: KubeApiServer): string | undefined {
  const lease = kube.get('leases', 'default', LEASE.leaseName) as { spec?: { holderIdentity?: string | null } } | undefined;
  return lease?.spec?.holderIdentity ?? undefined;
}

function missing(want: readonly string[], sinks: readonly NdjsonSink[]): string[] {
  const have = new Set(sinks.flatMap((s) => s.rawIds()));
  return want.filter((id) => !have.has(id));
}

/** Kill while the leader works: after its sink got something new, at a random moment within one flush interval. */
async function killWhileWorking(c: Collector, out: NdjsonSink): Promise<void> {
  const before = out.requests.length;
  await until(() => out.requests.length > before + 1, 15_000, 'leader delivering');
  await sleep(200 + Math.random() * 800);
  await c.kill();
}

/** Two collectors on one Lease: a leads and receives events, b is up as the standby. */
async function leaderAndStandby(lease: typeof LEASE, flushInterval = '1s') {
  const { kube, instance, sinks } = await setup();
  const a = await instance('a', lease, 'collector-a', flushInterval);
  const b = await instance('b', lease, 'collector-b', flushInterval);
  const flow = new EventFlow(kube);
  const ca = start(a.config);
  await until(() => holder(kube) === 'collector-a', 15_000, 'a leads');
  await kube.waitForWatches(1, 10_000);
  flow.start(10);
  const cb = start(b.config);
  await until(() => cb.logs('k8s_events input starting').length === 1, 15_000, 'b up (standby)');
  return { kube, instance, sinks, a, b, flow, ca, cb };
}

describe('k8s_events HA: two collector processes, one Lease', () => {
  it('the leader SIGKILLed and replaced with an empty state dir, twice: 0 versions lost, repeats only as the same ids', async () => {
    const { kube, instance, sinks, a, b, flow, ca, cb } = await leaderAndStandby(LEASE);

    // Kill a; its replacement a2 starts on a new, empty state dir (a deleted pod on emptyDir).
    // b (warm) and a2 then race for the expired Lease: either may win.
    await killWhileWorking(ca, a.out);
    const a2 = await instance('a2', LEASE);
    const ca2 = start(a2.config);
    const leads = (...ids: string[]) => ids.includes(holder(kube) ?? '');
    await until(() => leads('collector-b', 'collector-a2'), 15_000, 'a standby takes over');
    const first = holder(kube) === 'collector-b' ? { sink: b, proc: cb } : { sink: a2, proc: ca2 };
    const other = first.proc === cb ? { sink: a2, proc: ca2, id: 'collector-a2' } : { sink: b, proc: cb, id: 'collector-b' };
    // Then the same for the new leader; another empty-state replacement joins, and one of the standbys takes over.
    await killWhileWorking(first.proc, first.sink.out);
    const b2 = await instance('b2', LEASE);
    const cb2 = start(b2.config);
    await until(() => leads(other.id, 'collector-b2'), 15_000, 'the next standby takes over');
    const second = holder(kube) === other.id ? other : { sink: b2, proc: cb2 };
    await until(() => second.sink.out.requests.length > 2, 15_000, 'the new leader delivering');
    flow.stop();
    const want = flow.written;
    await until(() => missing(want, sinks).length === 0, 20_000, 'every version delivered');

    expect(missing(want, sinks)).toEqual([]);
    const written = new Set(want);
    for (const s of sinks) {
      // No instance emitted a version twice; every id delivered is a version that was written.
      expect(duplicates(s.idsOfDistinctRequests())).toEqual([]);
      expect(s.rawIds().filter((id) => !written.has(id))).toEqual([]);
    }
    // The new leaders started from the Lease mirror, not from scratch.
    expect(first.proc.logs('leading: starting the events collector')[0]).toMatchObject({ mirror: true });
    expect(second.proc.logs('leading: starting the events collector')[0]).toMatchObject({ mirror: true });
    const all = sinks.flatMap((s) => s.idsOfDistinctRequests());
    const repeats = all.length - new Set(all).size;
    // Re-emitted: at most what the killed leaders had not yet delivered — never the hour.
    expect(repeats).toBeLessThan(want.length / 2);
    console.info(`empty-state takeovers: ${want.length} versions, ${repeats} re-emitted as the same ids`);
    expect(want.length).toBeGreaterThan(300);
  }, 120_000);

  it('the leader SIGKILLed twice and restarted on its own state dir: it takes its Lease back, 0 lost, 0 duplicates', async () => {
    // The restart must come within lease_duration, as a container restart in the same pod does;
    // 5 s leaves room for a loaded test machine to start node.
    const lease = { ...LEASE, leaseDuration: '5s', renewDeadline: '3s' };
    const pair = await leaderAndStandby(lease);
    const { sinks, a, b, flow, cb } = pair;
    let ca = pair.ca;
    for (let kill = 0; kill < 2; kill++) {
      await killWhileWorking(ca, a.out);
      ca = start(a.config);
      await until(() => ca.logs('leading: starting the events collector').length === 1, 15_000, `a leads again (${kill})`);
    }
    await until(() => a.out.requests.length > 2, 15_000);
    flow.stop();
    const want = flow.written;
    await until(() => missing(want, sinks).length === 0, 20_000, 'every version delivered');

    expect(missing(want, sinks)).toEqual([]);
    expect(b.out.requests).toHaveLength(0);
    expect(duplicates(a.out.idsOfDistinctRequests())).toEqual([]);
    // Raw repeats are whole requests re-sent after a kill (same Idempotency-Key and body), at most one per kill.
    expect(a.out.resentRequests()).toBeLessThanOrEqual(2);
    expect(cb.logs('took over an expired lease')).toEqual([]);
    expect(want.length).toBeGreaterThan(200);
  }, 120_000);

  it('the leader SIGTERMed at the default lease timings: its partial batch leaves at once, it releases the Lease once acknowledged, the standby leads in well under a second; 0 lost, 0 duplicates', async () => {
    // flush_interval 30 s: had shutdown waited for it, a would give up after
    // handover_wait (5 s) with its last versions unacknowledged and b would re-emit them.
    const defaults = { leaseName: LEASE.leaseName, leaseDuration: '15s', renewDeadline: '10s', retryPeriod: '2s' };
    const { kube, sinks, a, b, flow, ca, cb } = await leaderAndStandby(defaults, '30s');
    await sleep(1000 + Math.random() * 1000);
    const termMs = Date.now();
    const exited = ca.terminate();
    await until(() => holder(kube) === 'collector-b', 10_000, 'b leads');
    const handoverMs = Date.now() - termMs;
    expect(await exited).toBe(0);
    await sleep(1500);
    flow.stop();
    const want = flow.written;
    await cb.terminate();

    expect(missing(want, sinks)).toEqual([]);
    expect(a.out.requests.length).toBeGreaterThan(0);
    const fromA = new Set(a.out.idsOfDistinctRequests());
    expect(b.out.idsOfDistinctRequests().filter((id) => fromA.has(id))).toEqual([]);
    expect(duplicates(a.out.idsOfDistinctRequests())).toEqual([]);
    expect(duplicates(b.out.idsOfDistinctRequests())).toEqual([]);
    // Released after the acks, not after handover_wait, and not expired: b did not wait out the Lease.
    expect(ca.logs('handover_wait over')).toEqual([]);
    expect(ca.logs('everything committed is acknowledged')).toHaveLength(1);
    expect(ca.logs('lease released')).toHaveLength(1);
    expect(cb.logs('took over an expired lease')).toEqual([]);
    expect(handoverMs).toBeLessThan(5000);
    console.info(`SIGTERM handover at the default lease timings: ${handoverMs} ms`);
  }, 90_000);
});
