import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyLocal } from '../../src/manifest/verify-local.ts';
import { readEntries } from '../../src/manifest/chain.ts';
import { addEvent, RecordingGate, startAgent, startKube, tempDir, until, writeKubeconfig } from '../inputs/k8s-events/support.ts';

/**
 * The events cursor's chain: each commit is an entry with the resourceVersion
 * range it stored, and events that expired while the collector was down are
 * a gap entry of their own (reason `expired`).
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('completeness chain of a k8s_events input', () => {
  it('records resourceVersion ranges per commit and an expired-events gap after the cursor went stale', async () => {
    const kube = await startKube();
    cleanups.push(() => kube.close());
    const d = tempDir();
    cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
    const kc = writeKubeconfig(d, kube.url);
    const state = path.join(d, 'state');
    const gate = new RecordingGate();
    const input = [`    kubeconfig: ${kc}`, '    backoff: { initial: 50ms, max: 500ms }'].join('\n');
    const a1 = await startAgent(state, input, { gate, manifest: true });
    await kube.waitForWatches(1);
    addEvent(kube);
    await until(() => gate.delivered.length === 1);
    await a1.agent.stop();
    addEvent(kube);
    kube.expireEvents(Date.now() + 3_600_000);
    addEvent(kube);
    kube.expireHistory();
    const a2 = await startAgent(state, input, { gate, manifest: true });
    cleanups.push(() => a2.agent.stop());
    await until(() => gate.delivered.length === 2);
    await until(() => verifyLocal(a2.agent.spool.db).gaps.length === 1);
    const report = verifyLocal(a2.agent.spool.db);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const events = report.streams.find((s) => s.stream === 'events')!;
    expect(events.records).toBe(2);
    expect(report.gaps.map((g) => g.gap.reason)).toEqual(['expired']);
    expect(report.gaps[0]!.gap.detail).toMatch(/may have expired before they could be read/);
    const withRecords = readEntries(a2.agent.spool.db, 'events', 1, events.toSeq).filter((e) => e.kind === 'records');
    expect(withRecords).toHaveLength(2);
    for (const e of withRecords) {
      expect(e.source?.resourceVersion?.min).toMatch(/^\d+$/);
      expect(e.source?.resourceVersion?.cursorTo).toMatch(/^\d+$/);
    }
  });
});
