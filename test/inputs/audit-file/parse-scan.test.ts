import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprintOf, readGzipHead, readGzipSize } from '../../../src/inputs/audit-file/identity.ts';
import { isBlank, parseAuditLine, sniffOversize } from '../../../src/inputs/audit-file/parse.ts';
import { backupsOf, compilePaths, coveredFiles, globToRegExp, lastLineEnd, pathPatternProblem, Scanner } from '../../../src/inputs/audit-file/scan.ts';
import { line, removeTmpDirs, tmpDir } from './harness.ts';

afterEach(removeTmpDirs);

describe('parseAuditLine', () => {
  it('takes id from auditID:stage and time from stageTimestamp (micro-second precision)', () => {
    const p = parseAuditLine('{"auditID":"abc","stage":"ResponseComplete","requestReceivedTimestamp":"2024-05-01T10:00:00.000001Z","stageTimestamp":"2024-05-01T10:00:00.123456Z"}', 7);
    expect(p).toMatchObject({ ok: true, id: 'abc:ResponseComplete', timeMs: Date.UTC(2024, 4, 1, 10, 0, 0, 123) });
  });
  it('falls back to requestReceivedTimestamp, then to the given time', () => {
    expect(parseAuditLine('{"auditID":"a","stage":"RequestReceived","requestReceivedTimestamp":"2024-05-01T10:00:00Z"}', 7)).toMatchObject({ timeMs: Date.UTC(2024, 4, 1, 10) });
    expect(parseAuditLine('{"auditID":"a","stage":"RequestReceived"}', 7)).toMatchObject({ timeMs: 7 });
  });
  it('rejects what is not an audit event, saying why', () => {
    expect(parseAuditLine('not json', 0)).toMatchObject({ ok: false, error: expect.stringMatching(/^invalid JSON/) });
    expect(parseAuditLine('[1]', 0)).toMatchObject({ ok: false, error: 'not a JSON object' });
    expect(parseAuditLine('{"stage":"x"}', 0)).toMatchObject({ ok: false, error: 'no auditID' });
    expect(parseAuditLine('{"auditID":"x"}', 0)).toMatchObject({ ok: false, error: 'no stage' });
  });
  it('sniffs id and time of an oversize line from its head and tail', () => {
    const l = line(7, { padBytes: 5000 });
    expect(sniffOversize(l.slice(0, 300), l.slice(-400))).toEqual({ id: '00000000-0000-4000-8000-000000000007:ResponseComplete', timeMs: 1_714_557_600_007 + 2 });
    expect(sniffOversize('garbage', 'more')).toEqual({ id: undefined, timeMs: undefined });
  });
  it('knows blank lines', () => {
    expect(isBlank('')).toBe(true);
    expect(isBlank(' \t\r')).toBe(true);
    expect(isBlank(' {}')).toBe(false);
  });
});

describe('path patterns', () => {
  it('accepts wildcards in the file name only', () => {
    expect(pathPatternProblem('/var/log/kubernetes/audit/audit*.log*')).toBeUndefined();
    expect(pathPatternProblem('/var/log/*/audit.log')).toMatch(/only allowed in the file name/);
    expect(pathPatternProblem('/var/log/a/[abc')).toMatch(/unclosed/);
  });
  it('translates globs', () => {
    const re = globToRegExp('audit*.log*', false);
    expect(['audit.log', 'audit-2024-05-01T10-00-00.000.log.gz', 'audit.log.1'].every((n) => re.test(n))).toBe(true);
    expect(re.test('other.log')).toBe(false);
    expect(globToRegExp('a{x,y}?.[!b]', false).test('ax1.c')).toBe(true);
    expect(globToRegExp('a{x,y}?.[!b]', false).test('ax1.b')).toBe(false);
  });
  it('excludes by file name or by full path', () => {
    const p = compilePaths(['/d/audit*.log*'], ['*.1', '/d/**/skip-*'], '/');
    expect(p.excluded('/d/audit.log.1')).toBe(true);
    expect(p.excluded('/d/skip-me')).toBe(true);
    expect(p.excluded('/d/audit.log')).toBe(false);
  });
});

describe('Scanner', () => {
  it('lists matching files with identity and fingerprints, also of a .gz still being written', async () => {
    const dir = tmpDir();
    const first = `${line(1)}\n`;
    fs.writeFileSync(path.join(dir, 'audit.log'), first + line(2));
    const gz = zlib.gzipSync(Buffer.from(`${first}${line(2)}\n`.repeat(50)));
    fs.writeFileSync(path.join(dir, 'audit-2024-05-01T10-00-00.000.log.gz'), gz.subarray(0, Math.min(2000, gz.length - 10))); // incomplete
    fs.writeFileSync(path.join(dir, 'unrelated.txt'), 'x');
    const s = new Scanner(compilePaths([path.join(dir, 'audit*.log*')], []), { wantLineEnd: () => true });
    const r = await s.scan();
    expect(r.errors).toEqual([]);
    const byName = Object.fromEntries(r.files.map((f) => [path.basename(f.path), f]));
    expect(Object.keys(byName).sort()).toEqual(['audit-2024-05-01T10-00-00.000.log.gz', 'audit.log']);
    const expected = fingerprintOf(Buffer.from(first));
    expect(byName['audit.log']!.fp).toEqual(expected);
    expect(byName['audit.log']!.lineEnd).toBe(Buffer.byteLength(first));
    expect(byName['audit-2024-05-01T10-00-00.000.log.gz']!.fp).toEqual(expected);
  });
  it('reports a missing directory as missing, not as an error', async () => {
    const dir = tmpDir();
    const s = new Scanner(compilePaths([path.join(dir, 'nope', 'audit*.log*')], []), { wantLineEnd: () => false });
    const r = await s.scan();
    expect(r).toEqual({ files: [], missingDirs: [path.join(dir, 'nope')], errors: [], consistent: true });
  });
  it('reads gzip sizes and last line ends', async () => {
    const dir = tmpDir();
    const gzFile = path.join(dir, 'a.gz');
    fs.writeFileSync(gzFile, zlib.gzipSync(Buffer.from('hello\nworld\n')));
    const gz = await fsp.open(gzFile, 'r');
    expect(await readGzipSize(gz, fs.statSync(gzFile).size)).toBe(12);
    expect((await readGzipHead(gz)).toString()).toBe('hello\nworld\n');
    await gz.close();
    const f = path.join(dir, 'b.log');
    fs.writeFileSync(f, `${'a'.repeat(70_000)}\n${'b'.repeat(70_000)}`);
    let fh = await fsp.open(f, 'r');
    expect(await lastLineEnd(fh, fs.statSync(f).size)).toBe(70_001);
    await fh.close();
    fs.writeFileSync(f, 'no newline');
    fh = await fsp.open(f, 'r');
    expect(await lastLineEnd(fh, 10)).toBe(0);
    await fh.close();
  });
});

describe('an exact path follows its rotation', () => {
  it('covers the lumberjack backups of that name (plain and .gz), nothing else', () => {
    const re = backupsOf('audit.log');
    expect(['audit-2024-05-01T10-00-00.000.log', 'audit-2024-05-01T10-00-00.000.log.gz'].every((n) => re.test(n))).toBe(true);
    expect(['audit.log.1', 'audit-x.log', 'other-2024-05-01T10-00-00.000.log', 'audit-2024-05-01T10-00-00.000.json', 'audit-2024-05-01T10-00-00.log'].some((n) => re.test(n))).toBe(false);
    expect(backupsOf('audit').test('audit-2024-05-01T10-00-00.000')).toBe(true);
  });

  it('coveredFiles lists the active file with its backups, oldest first, and honours exclude', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-cover-'));
    try {
      for (const n of ['audit.log', 'audit-2024-05-01T10-00-02.000.log', 'audit-2024-05-01T10-00-01.000.log.gz', 'audit.log.bak', 'other.log']) fs.writeFileSync(path.join(dir, n), '');
      expect(coveredFiles([path.join(dir, 'audit.log')], []).map((f) => path.basename(f))).toEqual([
        'audit-2024-05-01T10-00-01.000.log.gz',
        'audit-2024-05-01T10-00-02.000.log',
        'audit.log',
      ]);
      expect(coveredFiles([path.join(dir, 'audit.log')], ['*.gz']).map((f) => path.basename(f))).toEqual(['audit-2024-05-01T10-00-02.000.log', 'audit.log']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
