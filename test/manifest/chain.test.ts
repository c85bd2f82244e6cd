import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { recordHash } from '../../src/manifest/digest.ts';
import { verifyLocal } from '../../src/manifest/verify-local.ts';
import { fileDestination } from '../../src/manifest/destinations/file.ts';
import { formatOutput, verifyDestination } from '../../src/manifest/verify-output.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { dropTensPipelineYaml } from './support.ts';

/**
 * The local completeness chain: one entry per spool batch, written in the
 * input's transaction, gaps as entries of their own, and `ktrail verify
 * --state-dir` failing on any altered, removed or re-signed entry.
 */

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'ktrail.js');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const KEY = 'chain-test-hmac-key-0123456789';

async function runAgent(): Promise<{ dir: string; stateDir: string; out: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-chain-'));
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, 'hmac.key'), `${KEY}\n`);
  fs.writeFileSync(path.join(dir, 'policy.yaml'), 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{ level: Metadata }]\n');
  const out = path.join(dir, 'out.ndjson');
  const yaml = `
service: { state_dir: ${dir}/state, metrics: { enabled: false } }
manifest: { enabled: true, hmac_key_file: ${dir}/hmac.key, audit_policy_file: ${dir}/policy.yaml }
${dropTensPipelineYaml(out)}
`;
  const cfg = loadConfigText(yaml, 'test.yaml', { extraPlugins: [fakeInputPlugin()] });
  const agent = new Agent(cfg, { log: createLogger('silent'), metrics: createMetrics() });
  await agent.start();
  const end = Date.now() + 15_000;
  while (!(fs.existsSync(out) && fs.readFileSync(out, 'utf8').split('\n').length > 90) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  await agent.stop();
  return { dir, stateDir: path.join(dir, 'state'), out };
}

function open(stateDir: string) {
  return new BetterSqlite3(path.join(stateDir, 'ktrail.db'));
}

function ktrail(args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('local completeness chain', () => {
  it('holds one entry per batch and a gap entry per filtered batch, and verifies', async () => {
    const { stateDir, out } = await runAgent();
    const db = open(stateDir);
    try {
      const report = verifyLocal(db, { hmacKey: Buffer.from(KEY) });
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      const src = report.streams.find((s) => s.stream === 'src')!;
      expect(src.records).toBe(90);
      expect(src.entries).toBe(20); // 10 batches + 10 filter gaps
      expect(report.gaps.filter((g) => g.stream === 'src').map((g) => [g.gap.reason, g.gap.records])).toEqual(Array.from({ length: 10 }, () => ['filtered', 1]));
      expect(report.streams.some((s) => s.stream === '@audit_policy' && s.entries === 1)).toBe(true);
      // The record hashes are those of the lines the output wrote.
      const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
      const first = db.prepare("SELECT hashes, first_id FROM manifest_entries WHERE stream = 'src' AND kind = 'records' ORDER BY seq LIMIT 1").get() as { hashes: Buffer; first_id: string };
      expect(first.first_id).toBe('rec-1');
      expect(first.hashes.subarray(0, 32).equals(recordHash(lines[0]!))).toBe(true);
    } finally {
      db.close();
    }
    const dest = await verifyDestination('out', fileDestination(out), { hmacKey: Buffer.from(KEY) });
    expect(formatOutput(dest, {})).toContain('result: OK');
    expect(dest.streams.find((s) => s.stream === 'src')).toMatchObject({ records: 90, verified: 90 });
    // The manifests at the destination are signed too: another key fails them.
    const forged = await verifyDestination('out', fileDestination(out), { hmacKey: Buffer.from('not-the-key') });
    expect(forged.ok).toBe(false);
    expect(forged.problems.some((p) => /manifest #1: HMAC missing or wrong/.test(p))).toBe(true);
    const cli = ktrail(['verify', '--state-dir', stateDir]);
    expect(cli.status).toBe(0);
    expect(cli.stdout).toContain('result: OK');
    expect(cli.stdout).toContain('filtered, 1 record(s)');
  });

  it('fails on an altered entry, a removed entry and a wrong HMAC key, and never prints the key', async () => {
    const { dir, stateDir } = await runAgent();
    const db = open(stateDir);
    db.prepare("UPDATE manifest_entries SET records = records + 1 WHERE stream = 'src' AND seq = 3").run();
    db.close();
    let r = ktrail(['verify', '--state-dir', stateDir, '--hmac-key-file', path.join(dir, 'hmac.key')]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/entry #3: .*hash mismatch/);
    expect(r.stdout + r.stderr).not.toContain(KEY);

    const db2 = open(stateDir);
    db2.prepare("UPDATE manifest_entries SET records = records - 1 WHERE stream = 'src' AND seq = 3").run();
    db2.prepare("DELETE FROM manifest_entries WHERE stream = 'src' AND seq = 5").run();
    db2.close();
    r = ktrail(['verify', '--state-dir', stateDir]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('entries 5..5 are missing');
    expect(r.stdout).not.toContain('#3:');

    fs.writeFileSync(path.join(dir, 'other.key'), 'another-key');
    r = ktrail(['verify', '--state-dir', stateDir, '--hmac-key-file', path.join(dir, 'other.key')]);
    expect(r.stdout).toContain('HMAC mismatch');
    expect(r.stdout + r.stderr).not.toContain('another-key');
  });
});
