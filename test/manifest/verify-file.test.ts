import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSink } from '../inputs/audit-file/harness.ts';
import { cleanUpScenarios, configFor, escapeRe, expectOnlyTheDeletedGap, idsOf, ktrailVerify, MANIFEST_SEQ_RE, runScenario } from './scenario.ts';

/**
 * `ktrail verify -c --output` against the file output after the run
 * (rotations, a backup deleted unread, 3 SIGKILLs): it passes and reports
 * exactly that one gap, and fails on a deleted record (naming its entry and
 * source range), an edited record (its hash) and a removed manifest (the chain).
 */

cleanUpScenarios();

const sinkOf = (root: string) => `{ type: file, path: ${JSON.stringify(path.join(root, 'out', 'audit.ndjson'))}, max_file_bytes: 10GiB, batch: { max_records: 200, flush_interval: 50ms } }`;

describe('ktrail verify against the file output', () => {
  it('after rotations, a deleted-unread backup and 3 SIGKILLs: passes with exactly that gap; fails on a deleted record, an edited record, a removed manifest', async () => {
    const sc = await runScenario(sinkOf);
    const outFile = path.join(sc.root, 'out', 'audit.ndjson');
    const atSink = idsOf(fs.readFileSync(outFile, 'utf8'));
    expect([...new Set(atSink)].sort()).toEqual([...sc.expectedIds].sort());

    /** A copy of the sink's directory, changed by `edit`, and a config pointed at it. */
    const variant = (name: string, edit: (lines: string[]) => string[]): string => {
      const dir = path.join(sc.root, name);
      fs.mkdirSync(dir);
      for (const f of fs.readdirSync(path.dirname(outFile))) fs.writeFileSync(path.join(dir, f), edit(fs.readFileSync(path.join(path.dirname(outFile), f), 'utf8').split('\n')).join('\n'));
      const cfg = path.join(sc.root, `${name}.yaml`);
      fs.writeFileSync(cfg, configFor(sc.auditDir, sc.stateDir, sinkOf(sc.root).replace(path.join(sc.root, 'out'), dir)));
      return cfg;
    };

    // Intact: passes, and the only gap is the deleted backup with its size.
    const good = ktrailVerify(sc.config);
    const { gaps, covered } = expectOnlyTheDeletedGap(good, sc);
    expect(gaps[0]).toContain(sc.deleted.file);
    // Every record at the sink is covered by a manifest.
    expect(Number(covered[1])).toBe(Number(covered[2]));

    // One record deleted (every copy of it, replays included): fails and names its entry and source range.
    const data = readSink(outFile).filter((r) => r.id !== '');
    const victim = data[Math.floor(data.length / 2)]!;
    const missing = ktrailVerify(variant('missing', (ls) => ls.filter((l) => l !== victim.raw)));
    expect(missing.status).toBe(1);
    const stream = escapeRe(`audit:${path.join(sc.auditDir, 'audit.log')}`);
    expect(missing.stdout).toMatch(new RegExp(`FAIL ${stream} entry #\\d+, \\S+ bytes \\d+\\.\\.\\d+ \\(fingerprint [0-9a-f]+\\), batch \\d+: record \\d+ \\(${victim.id}\\) missing`));
    expect(missing.stdout).toContain('result: FAILED');

    // One record edited: fails on its hash.
    const edited = ktrailVerify(variant('edited', (ls) => ls.map((l) => (l === victim.raw ? l.replace('"verb":"get"', '"verb":"delete"') : l))));
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain(`(${victim.id}) altered (SHA-256 differs from the manifest`);

    // One manifest removed: fails on the chain.
    const removed = ktrailVerify(variant('removed', (ls) => ls.filter((l) => !MANIFEST_SEQ_RE(2).test(l))));
    expect(removed.status).toBe(1);
    expect(removed.stdout).toContain('manifests #2..#2 are missing');
  });
});
