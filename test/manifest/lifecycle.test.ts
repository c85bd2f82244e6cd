import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { fileDestination } from '../../src/manifest/destinations/file.ts';
import { readEntries, readHeads } from '../../src/manifest/chain.ts';
import { verifyDestination } from '../../src/manifest/verify-output.ts';
import { verifyLocal } from '../../src/manifest/verify-local.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';

/**
 * The chain over the agent's lifetime: the audit policy hash recorded once
 * per change, sealed entries pruned without breaking the rest, and --from /
 * --to windows at the destination.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-manifest-'));
  dirs.push(d);
  return d;
}

/** One agent run over `total` fake records (batches of 10) to a file output; returns when all arrived and it stopped. */
async function run(dir: string, total: number, manifestYaml: string): Promise<void> {
  const out = path.join(dir, 'out.ndjson');
  const yaml = `
service: { state_dir: ${dir}/state, metrics: { enabled: false } }
manifest: ${manifestYaml}
inputs:
  src: { type: fake, total: ${total}, batch: 10 }
outputs:
  out: { type: file, path: ${out} }
`;
  const agent = new Agent(loadConfigText(yaml, 'test.yaml', { extraPlugins: [fakeInputPlugin()] }), { log: createLogger('silent'), metrics: createMetrics() });
  await agent.start();
  const lines = () => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('{"ktrail_manifest"')).length : 0);
  const end = Date.now() + 15_000;
  while (lines() < total && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  await agent.stop();
  expect(lines()).toBe(total);
}

describe('manifest chain over restarts', () => {
  it('records the audit policy hash at start, again only when the file changed', async () => {
    const dir = tmp();
    const policy = path.join(dir, 'policy.yaml');
    const m = `{ enabled: true, audit_policy_file: ${policy} }`;
    fs.writeFileSync(policy, 'rules: [{ level: Metadata }]\n');
    await run(dir, 10, m);
    await run(dir, 20, m);
    fs.writeFileSync(policy, 'rules: [{ level: RequestResponse }]\n');
    await run(dir, 30, m);
    const db = new BetterSqlite3(path.join(dir, 'state', 'ktrail.db'), { readonly: true });
    try {
      const entries = readEntries(db, '@audit_policy', 1, 100);
      expect(entries.map((e) => e.policy?.sha256.length)).toEqual([64, 64]);
      expect(entries[0]!.policy!.sha256).not.toBe(entries[1]!.policy!.sha256);
      expect(verifyLocal(db).ok).toBe(true);
    } finally {
      db.close();
    }
  });

  it('prunes sealed entries after retain_sealed, keeping the link: the local chain and the destination still verify', async () => {
    const dir = tmp();
    await run(dir, 50, '{ enabled: true, retain_sealed: 0s }');
    // The next run seals (and prunes) what the first one sealed at its shutdown.
    await run(dir, 100, '{ enabled: true, retain_sealed: 0s }');
    const db = new BetterSqlite3(path.join(dir, 'state', 'ktrail.db'), { readonly: true });
    try {
      const head = readHeads(db).find((h) => h.stream === 'src')!;
      expect(head.prunedSeq).toBeGreaterThan(0);
      expect(head.prunedSeq).toBeLessThan(head.headSeq);
      const left = (db.prepare("SELECT count(*) AS n FROM manifest_entries WHERE stream = 'src'").get() as { n: number }).n;
      expect(left).toBe(head.headSeq - head.prunedSeq);
      const local = verifyLocal(db);
      expect(local.problems).toEqual([]);
      expect(local.ok).toBe(true);
      expect(local.streams.find((s) => s.stream === 'src')!.fromSeq).toBe(head.prunedSeq + 1);
    } finally {
      db.close();
    }
    const dest = await verifyDestination('out', fileDestination(path.join(dir, 'out.ndjson')), {});
    expect(dest.problems).toEqual([]);
    expect(dest.ok).toBe(true);
    expect(dest.streams.find((s) => s.stream === 'src')).toMatchObject({ fromSeq: 1, verified: 100 });
  });

  it('--from/--to select entries by the time they were written', async () => {
    const dir = tmp();
    await run(dir, 30, '{ enabled: true }');
    const between = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    await run(dir, 60, '{ enabled: true }');
    const dest = (w: { fromMs?: number; toMs?: number }) => verifyDestination('out', fileDestination(path.join(dir, 'out.ndjson')), w);
    expect((await dest({})).streams[0]!.records).toBe(60);
    expect((await dest({ toMs: between })).streams[0]!.records).toBe(30);
    expect((await dest({ fromMs: between })).streams[0]!.records).toBe(30);
    expect((await dest({ fromMs: Date.now() + 60_000 })).streams[0]!.records).toBe(0);
  });
});
