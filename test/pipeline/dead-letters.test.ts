import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatStatus, readStatus } from '../../src/cli/status.ts';
import { DeadLetterLog } from '../../src/pipeline/dead-letter-log.ts';
import { Spool } from '../../src/spool/spool.ts';
import { auditLine } from '../helpers/audit-events.ts';
import { configYaml, InProcessAgent, removeTmpDirs, tmpDir, waitFor } from '../inputs/audit-file/harness.ts';

const running: InProcessAgent[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

const secretGet = (auditID: string, value: string) =>
  auditLine({
    auditID,
    level: 'RequestResponse',
    objectRef: { resource: 'secrets', namespace: 'default', name: 'registry', apiVersion: 'v1' },
    responseObject: { kind: 'Secret', apiVersion: 'v1', metadata: { name: 'registry' }, data: { password: value } },
  });
const okLine = (id: string) => auditLine({ auditID: id, objectRef: { resource: 'pods', namespace: 'default', name: 'web', apiVersion: 'v1' } });

async function run(lines: Buffer, opts: { redact: boolean; extra?: string }) {
  const root = tmpDir();
  const auditDir = path.join(root, 'audit');
  fs.mkdirSync(auditDir);
  fs.writeFileSync(path.join(auditDir, 'audit.log'), lines);
  const extra = [opts.redact ? 'processors:\n  secrets: { type: redact }' : '', opts.extra ?? ''].join('\n');
  const agent = await InProcessAgent.start(configYaml({ auditDir, stateDir: path.join(root, 'state'), outFile: path.join(root, 'out.ndjson'), input: { start_at: 'beginning' }, extra, logLevel: 'warn' }), {
    logFile: path.join(root, 'agent.log'),
  });
  running.push(agent);
  await waitFor(() => fs.existsSync(path.join(root, 'out.ndjson')) && fs.readFileSync(path.join(root, 'out.ndjson'), 'utf8').includes('"last"'), 15_000, 'the last line delivered');
  const rows = agent.agent.spool.db.prepare('SELECT code, reason, data, length, sha256, withheld, source FROM dead_letters ORDER BY id').all() as Array<{
    code: string; reason: string; data: Buffer | null; length: number; sha256: string; withheld: number; source: string;
  }>;
  return { agent, rows, root };
}

describe('dead letters: what is kept of content the pipeline could not process', () => {
  it('a torn Secret line is stored as metadata only (file, offset, length, sha256, reason), logged once at warn', async () => {
    const torn = secretGet('t-1', 'REGISTRYPASSWORD').slice(0, -40);
    const content = `${okLine('first')}\n${torn}\n${okLine('last')}\n`;
    const { rows, agent } = await run(Buffer.from(content), { redact: true });
    expect(rows).toHaveLength(1);
    const r = rows[0]!;
    expect(r.code).toBe('parse_error');
    expect(r.withheld).toBe(1);
    expect(r.data).toBeNull();
    expect(r.length).toBe(Buffer.byteLength(torn));
    expect(r.sha256).toBe(createHash('sha256').update(torn).digest('hex'));
    expect(JSON.parse(r.source)).toMatchObject({ offset: content.indexOf(torn), length: Buffer.byteLength(torn) });
    expect(r.reason).not.toContain('REGISTRYPASSWORD');
    const log = agent.logText();
    expect(log).toContain('dead-lettered as metadata only');
    expect(log).not.toContain('REGISTRYPASSWORD');
    expect(await agent.metrics.deadLettersWithheld.get().then((m) => m.values[0]?.value)).toBe(1);
  });

  it('with spool.dead_letter_store_unredactable: true the same line is stored, byte for byte', async () => {
    const torn = secretGet('t-2', 'REGISTRYPASSWORD').slice(0, -40);
    const { rows } = await run(Buffer.from(`${torn}\n${okLine('last')}\n`), { redact: true, extra: 'spool: { dead_letter_store_unredactable: true }' });
    expect(rows[0]!.withheld).toBe(0);
    expect(rows[0]!.data).toEqual(Buffer.from(torn));
  });

  it('binary junk no redact rule could apply to is stored losslessly as a BLOB with its length', async () => {
    const junk = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x41, 0x0d]);
    const { rows } = await run(Buffer.concat([junk, Buffer.from(`\n${okLine('last')}\n`)]), { redact: true });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.withheld).toBe(0);
    // The trailing CR is the line ending's, not content.
    expect(rows[0]!.data).toEqual(junk.subarray(0, -1));
    expect(rows[0]!.length).toBe(junk.length - 1);
  });

  it('without a redact processor nothing claims to be redacted, so the bytes are stored', async () => {
    const torn = secretGet('t-3', 'X').slice(0, -40);
    const { rows } = await run(Buffer.from(`${torn}\n${okLine('last')}\n`), { redact: false });
    expect(rows[0]!.withheld).toBe(0);
    expect(rows[0]!.data!.toString()).toBe(torn);
  });
});

describe('dead-letter log: the first of each code, then counts', () => {
  it('logs the first entry of a code with its detail and the rest as one count per interval', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = { warn: (obj: Record<string, unknown>, msg: string) => lines.push({ ...obj, msg }) } as never;
    const dl = new DeadLetterLog(log, 50);
    const entry = (code: string, i: number) => ({ component: 'audit', code, reason: `${code} #${i}`, recordId: `r${i}` });
    dl.note(Array.from({ length: 100 }, (_, i) => entry('parse_error', i)));
    dl.note([entry('oversize', 0), entry('oversize', 1)]);
    expect(lines.map((l) => [l.code, l.reason])).toEqual([['parse_error', 'parse_error #0'], ['oversize', 'oversize #0']]);
    await waitFor(() => lines.length === 4, 2000, 'the per-interval counts');
    expect(lines.slice(2).map((l) => [l.code, l.count])).toEqual([['parse_error', 99], ['oversize', 1]]);
    dl.stop();
  });
});

describe('ktrail status: dead letters grouped by code', () => {
  it('10,000 dead letters whose reasons all differ print as one group line; --verbose lists them', () => {
    const dir = tmpDir();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    spool.deadLetter(
      Array.from({ length: 10_000 }, (_, i) => ({ component: 'es', output: 'es', recordId: `id-${i}`, code: 'mapper_parsing_exception', reason: `mapper_parsing_exception: document with id 'id-${i}'`, data: '{}' })),
    );
    spool.deadLetter([{ component: 'audit', code: 'oversize', reason: 'oversize: line of 20 MiB', withheld: true, length: 20 << 20, sha256: 'ab'.repeat(32) }]);
    const text = formatStatus(readStatus(dir));
    const dlLines = text.slice(text.indexOf('dead letters:')).split('\n');
    expect(dlLines.length).toBeLessThan(8);
    expect(text).toMatch(/es: 10000 × mapper_parsing_exception, first \S+, last \S+/);
    expect(text).toMatch(/audit: 1 × oversize \(1 withheld: metadata only\)/);
    const verbose = formatStatus(readStatus(dir, Date.now(), { verbose: true, limit: 5 }));
    expect(verbose).toContain('5 shown');
    expect(verbose).toMatch(/#\d+ \S+ audit oversize bytes=20971520 sha256=abababababababab withheld/);
    const cli = spawnSync(process.execPath, [path.resolve(import.meta.dirname, '../../bin/ktrail.js'), 'status', '--state-dir', dir, '--verbose'], { encoding: 'utf8' });
    expect(cli.status).toBe(0);
    expect(cli.stdout).toContain("id-9999");
    spool.close();
  });
});
