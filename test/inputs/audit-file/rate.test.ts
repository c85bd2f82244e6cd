import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { errorMessage } from '../../../src/errors.ts';
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
  const times: number[] = [];
  let seq = 0;
  let running = true;
  const done = (async () => {
    const t0 = Date.now();
    while (running) {
      const due = Math.floor(((Date.now() - t0) * RATE) / 1000);
      while (seq < due && running) {
        const ev = event(seq);
        await writer.write(ev);
        times.push(Date.parse((JSON.parse(ev) as { stageTimestamp: string }).stageTimestamp));
        written.push(`${auditId(seq)}:ResponseComplete`);
        seq++;
      }
      await sleep(10);
    }
  })();
  return {
    written,
    times,
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

/**
 * Hard-links every file that appears in `dir` into `into` (polling every 5 ms),
 * so what was on disk at a moment can be read back after the writer deleted it.
 * `listings` holds, per poll, its time and the inodes present.
 */
function snapshotter(dir: string, into: string) {
  fs.mkdirSync(into, { recursive: true });
  const linked = new Map<number, string>();
  const listings: Array<{ ms: number; inodes: Set<number> }> = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const ms = Date.now();
      const inodes = new Set<number>();
      for (const name of fs.readdirSync(dir)) {
        const from = path.join(dir, name);
        try {
          const ino = fs.statSync(from).ino;
          inodes.add(ino);
          if (!linked.has(ino)) {
            const to = path.join(into, `${ino}-${name}`);
            fs.linkSync(from, to);
            linked.set(ino, to);
          }
        } catch {
          // Rotated or deleted between the listing and the link.
        }
      }
      listings.push({ ms, inodes });
      await sleep(5);
    }
  })();
  /** Audit ids in the file with this inode, in order. */
  const idsOf = (ino: number): string[] => {
    const f = linked.get(ino);
    if (f === undefined) return [];
    let buf = fs.readFileSync(f);
    if (f.endsWith('.gz')) buf = zlib.gunzipSync(buf);
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => `${(JSON.parse(l) as { auditID: string }).auditID}:ResponseComplete`);
  };
  return {
    listings,
    idsOf,
    async stop() {
      running = false;
      await done;
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
  return { root, auditDir, outFile, start };
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

  it('stopped while 100k events are written, then restarted: every file on disk when it opened its files is delivered; the rest is a gap with its time span', async () => {
    const { root, auditDir, outFile, start } = setup('audit.log');
    const w = steadyWriter(auditDir);
    const snap = snapshotter(auditDir, path.join(root, 'snapshot'));
    const first = start();
    await sleep(1500);
    first.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    const stoppedAtSeq = w.seq;
    await waitFor(() => w.seq >= stoppedAtSeq + 100_000, 30_000, '100k events written while ktrail is down');
    const agent = start();
    await waitFor(() => agent.stderr.includes('"msg":"audit files open"'), 20_000, 'the agent to open its files');
    const opened = agent.stderr.split('\n').find((l) => l.includes('"msg":"audit files open"'))!;
    const openedAtMs = Date.parse((JSON.parse(opened) as { openedAt: string }).openedAt);
    await waitFor(() => snap.listings.some((l) => l.ms > openedAtMs), 5_000, 'a listing after the agent opened its files');
    // Files only ever appear as the newest: whatever a listing after the open still shows
    // existed through the agent's first scan, so it must be delivered completely.
    const onDisk = snap.listings.find((l) => l.ms > openedAtMs)!.inodes;
    const firstOnDisk = Math.min(...[...onDisk].map((ino) => snap.idsOf(ino)[0]).filter((id) => id !== undefined).map((id) => w.written.indexOf(id)));
    await sleep(1000);
    await w.stop();
    await snap.stop();
    const want = w.written.slice(firstOnDisk);
    await waitFor(() => {
      const got = new Set(readSink(outFile).map((r) => r.id));
      return want.every((id) => got.has(id));
    }, 60_000, 'every event on disk at the restart at the sink').catch((e: unknown) => {
      // Say which sequence numbers are missing, and what the agent logged.
      const got = new Set(readSink(outFile).map((r) => r.id));
      const missing = [...want.keys()].filter((i) => !got.has(want[i]!)).map((i) => i + firstOnDisk);
      throw new Error(`${errorMessage(e)}: ${missing.length} missing, seq ${missing[0]}..${missing.at(-1)}; agent log:\n${agent.stderr}`);
    });
    agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    const got = new Set(readSink(outFile).map((r) => r.id));
    expect(want.filter((id) => !got.has(id))).toEqual([]);
    // More was written while down than 10 backups hold: some of it was rotated away unread ...
    const lostSeqs = [...w.written.slice(0, firstOnDisk).keys()].filter((seq) => !got.has(w.written[seq]!));
    expect(lostSeqs.length).toBeGreaterThan(0);
    // ... and reported as one gap whose time span covers what was lost.
    const gaps = agent.stderr
      .split('\n')
      .filter((l) => l.includes('rotated away while ktrail was not reading'))
      .map((l) => JSON.parse(l) as { from: string; to: string; estimatedFiles: number });
    expect(gaps).toHaveLength(1);
    const timeOf = (seq: number) => w.times[seq]!;
    expect(Date.parse(gaps[0]!.from)).toBeLessThanOrEqual(timeOf(lostSeqs[0]!) + 1000);
    expect(Date.parse(gaps[0]!.to)).toBeGreaterThanOrEqual(timeOf(lostSeqs.at(-1)!));
    expect(gaps[0]!.estimatedFiles).toBeGreaterThan(0);
  }, 120_000);
});
