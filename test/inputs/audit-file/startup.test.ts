import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LumberjackWriter } from '../../helpers/lumberjack.ts';
import { ChildAgent, childAgentsKilledAfterEach, configYaml, line, tmpDir, waitFor } from './harness.ts';

const agents = childAgentsKilledAfterEach();

function logLines(a: ChildAgent): Array<{ msg: string; files?: number; matched?: number; sinceStartMs?: number }> {
  return a.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string });
}

describe('audit_file: files first (real agent process)', () => {
  it('opens every matching file before the spool, the outputs and the telemetry server start', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 4 * 1024, compress: true });
    for (let seq = 0; seq < 60; seq++) await writer.write(line(seq));
    await writer.mill();
    await writer.close();
    const files = fs.readdirSync(auditDir).length;
    expect(files).toBeGreaterThan(5);
    const cfg = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(cfg, configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile: path.join(root, 'out', 'audit.ndjson') }));
    const agent = new ChildAgent(cfg);
    agents.push(agent);
    await agent.metricsUrl();
    await waitFor(() => logLines(agent).some((l) => l.msg === 'ktrail started'), 10_000, 'started');

    const msgs = logLines(agent).map((l) => l.msg);
    const open = logLines(agent).find((l) => l.msg === 'audit files open')!;
    expect(open).toMatchObject({ files, matched: files, beforeValidation: true });
    expect(open.sinceStartMs).toBeGreaterThan(0);
    // Before anything else is started (the spool opens inside "ktrail started").
    expect(msgs.indexOf('audit files open')).toBeLessThan(msgs.indexOf('audit_file input started'));
    expect(msgs.indexOf('audit files open')).toBeLessThan(msgs.indexOf('ktrail started'));
    expect(msgs.indexOf('audit files open')).toBeLessThan(msgs.indexOf('metrics and health endpoints listening'));
    // The descriptors it opened are the ones the input keeps: no second set (at most the
    // reader's own descriptor of the file it reads, while the held one is let go, and the one a
    // rescan has open while it looks at a file: it looks at one at a time).
    const fds = fs.readdirSync(`/proc/${agent.child.pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${agent.child.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    const auditFds = fds.filter((t) => t.startsWith(auditDir));
    expect(auditFds.length).toBeLessThanOrEqual(new Set(auditFds).size + 2);
  });

  it('opens the files after validation when the raw config cannot say which they are (an environment reference in a path)', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    const writer = new LumberjackWriter({ dir: auditDir, maxSizeBytes: 4 * 1024 });
    for (let seq = 0; seq < 20; seq++) await writer.write(line(seq));
    await writer.close();
    const files = fs.readdirSync(auditDir).length;
    process.env.KTRAIL_TEST_AUDIT_DIR = auditDir;
    const cfg = path.join(root, 'ktrail.yaml');
    fs.writeFileSync(
      cfg,
      configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile: path.join(root, 'out', 'audit.ndjson'), input: { paths: ['${KTRAIL_TEST_AUDIT_DIR}/audit.log'] } }),
    );
    const agent = new ChildAgent(cfg);
    agents.push(agent);
    await waitFor(() => logLines(agent).some((l) => l.msg === 'ktrail started'), 10_000, 'started');
    delete process.env.KTRAIL_TEST_AUDIT_DIR;
    expect(logLines(agent).find((l) => l.msg === 'audit files open')).toMatchObject({ files, matched: files, beforeValidation: false });
  });
});
