import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { auditId, ChildAgent, childAgentsKilledAfterEach, configYaml, readSink, tmpDir, waitFor } from './harness.ts';

/**
 * kube-apiserver's rotation at the rate issue #12 measured: 15k events/s,
 * 5 MB files, 10 backups, gzip (about 3 s of retention on disk).
 */

const agents = childAgentsKilledAfterEach();

const RATE = 15_000;

/** A Metadata-level event stamped with the real time. */
function event(seq: number): string {
  const t = new Date().toISOString();
  return JSON.stringify({
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: auditId(seq),
    stage: 'ResponseComplete',
    requestURI: `/api/v1/namespaces/default/configmaps/cm-${seq}`,
    verb: 'get',
    user: { username: 'system:serviceaccount:kube-system:generic-garbage-collector', groups: ['system:serviceaccounts', 'system:authenticated'] },
    sourceIPs: ['10.0.0.12'],
    userAgent: 'kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef0/system:serviceaccount:kube-system:generic-garbage-collector',
    objectRef: { resource: 'configmaps', namespace: 'default', name: `cm-${seq}`, apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: t,
    stageTimestamp: t,
  });
}

/** Writes at RATE events/s in 10 ms slices until stopped; ids are recorded in order. */
function steadyWriter(dir: string) {
  const writer = new LumberjackWriter({ dir, maxSizeBytes: 5 * 1000 * 1000, maxBackups: 10, compress: true, compressDelayMs: 1 });
  const written: string[] = [];
  let seq = 0;
  let running = true;
  const done = (async () => {
    const t0 = Date.now();
    while (running) {
      const due = Math.floor(((Date.now() - t0) * RATE) / 1000);
      while (seq < due && running) {
        await writer.write(event(seq));
        written.push(`${auditId(seq)}:ResponseComplete`);
        seq++;
      }
      await sleep(10);
    }
  })();
  return {
    written,
    get seq() {
      return seq;
    },
    async stop() {
      running = false;
      await done;
      await writer.close();
    },
  };
}

function setup(paths: string) {
  const root = tmpDir();
  const auditDir = path.join(root, 'audit');
  fs.mkdirSync(auditDir, { recursive: true });
  const outFile = path.join(root, 'out', 'audit.ndjson');
  const cfg = path.join(root, 'ktrail.yaml');
  fs.writeFileSync(cfg, configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile, input: { paths: [path.join(auditDir, paths)], rescan_interval: '1s' } }));
  const start = () => {
    const a = new ChildAgent(cfg);
    agents.push(a);
    return a;
  };
  return { auditDir, outFile, start };
}

describe('audit_file at 15k events/s, 5 MB files, 10 backups, gzip (real agent process)', () => {
  it.each([['audit.log'], ['audit*.log*']])('10 SIGKILLs with immediate restart (paths: %s): 0 lost, 0 duplicates after dedup by id', async (paths) => {
    const { auditDir, outFile, start } = setup(paths);
    const w = steadyWriter(auditDir);
    for (let k = 0; k < 10; k++) {
      const a = start();
      await sleep(400 + Math.random() * 400);
      a.kill('SIGKILL');
      await a.exited;
    }
    const agent = start();
    await sleep(1000);
    await w.stop();
    const want = new Set(w.written);
    await waitFor(() => new Set(readSink(outFile).map((r) => r.id)).size >= want.size, 60_000, 'every id at the sink');
    await sleep(300);
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    const got = readSink(outFile).map((r) => r.id);
    const unique = new Set(got);
    expect(w.written.filter((id) => !unique.has(id))).toEqual([]);
    expect([...unique].filter((id) => !want.has(id))).toEqual([]);
  }, 120_000);
});
