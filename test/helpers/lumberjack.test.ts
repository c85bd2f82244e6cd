import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { LumberjackWriter, backupName, copyTruncate, formatBackupTime, listBackups, parseBackupName } from './lumberjack.ts';

const dirs: string[] = [];
const writers: LumberjackWriter[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
  dirs.push(dir);
  return dir;
}

/** A clock the test moves by hand. */
function manualClock(startIso = '2024-05-01T10:00:00.000Z'): { now: () => Date; advance: (ms: number) => void } {
  let ms = Date.parse(startIso);
  return { now: () => new Date(ms), advance: (d) => (ms += d) };
}

function writer(opts: ConstructorParameters<typeof LumberjackWriter>[0]): LumberjackWriter {
  const w = new LumberjackWriter(opts);
  writers.push(w);
  return w;
}

/** A line carrying its index: 19 bytes, 20 with the newline the writer adds. */
function line(i: number): string {
  return `{"n":${String(i).padStart(13, '0')}}`;
}

function read(dir: string, name: string): string {
  return fs.readFileSync(path.join(dir, name), 'utf8');
}

afterEach(async () => {
  for (const w of writers.splice(0)) await w.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('backup names', () => {
  it('use the UTC layout 2006-01-02T15-04-05.000 between name and extension', () => {
    const at = new Date('2024-05-01T10:02:03.045Z');
    expect(formatBackupTime(at)).toBe('2024-05-01T10-02-03.045');
    expect(backupName('audit.log', at)).toBe('audit-2024-05-01T10-02-03.045.log');
    expect(backupName('kube-apiserver-audit', at)).toBe('kube-apiserver-audit-2024-05-01T10-02-03.045');
  });

  it('parse back, plain and compressed, and reject anything else', () => {
    expect(parseBackupName('audit.log', 'audit-2024-05-01T10-02-03.045.log')).toEqual({
      time: new Date('2024-05-01T10:02:03.045Z'),
      compressed: false,
    });
    expect(parseBackupName('audit.log', 'audit-2024-05-01T10-02-03.045.log.gz')?.compressed).toBe(true);
    for (const other of ['audit.log', 'audit.log.1', 'audit-2024-05-01T10-02-03.log', 'audit-2024-13-01T10-02-03.045.log', 'other-2024-05-01T10-02-03.045.log']) {
      expect(parseBackupName('audit.log', other)).toBeUndefined();
    }
  });
});

describe('LumberjackWriter rotation', () => {
  it('renames to audit-<UTC ts>.log when the next write would exceed maxSize, keeping every line once and in order', async () => {
    const dir = tempDir();
    const clock = manualClock();
    const w = writer({ dir, maxSizeBytes: 50, clock: clock.now });
    expect(line(0).length + 1).toBe(20);
    for (let i = 0; i < 7; i++) {
      await w.write(line(i));
      clock.advance(1500);
    }
    // 2 lines (40 bytes) fit in 50; the third would make 60 > 50 → rotate before it.
    const backups = w.backups();
    expect(backups).toEqual(['audit-2024-05-01T10-00-03.000.log', 'audit-2024-05-01T10-00-06.000.log', 'audit-2024-05-01T10-00-09.000.log']);
    expect(w.rotations).toBe(3);
    const all = [...backups, 'audit.log'].map((n) => read(dir, n)).join('');
    expect(all).toBe(Array.from({ length: 7 }, (_, i) => `${line(i)}\n`).join(''));
    for (const name of [...backups, 'audit.log']) expect(fs.statSync(path.join(dir, name)).size).toBeLessThanOrEqual(50);
    expect(read(dir, 'audit.log')).toBe(`${line(6)}\n`);
  });

  it('rotates exactly at the boundary: a write that fills the file to maxSize does not rotate', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 40, clock: manualClock().now });
    await w.write(line(0));
    await w.write(line(1));
    expect(w.backups()).toEqual([]);
    expect(w.sizeBytes).toBe(40);
    await w.write(line(2));
    expect(w.backups()).toHaveLength(1);
  });

  it('keeps backup names unique and sortable when rotations share a millisecond', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 1000, clock: () => new Date('2024-05-01T10:00:00.000Z') });
    for (let i = 0; i < 3; i++) {
      await w.write(line(i));
      await w.rotate();
    }
    expect(w.backups()).toEqual([
      'audit-2024-05-01T10-00-00.000.log',
      'audit-2024-05-01T10-00-00.001.log',
      'audit-2024-05-01T10-00-00.002.log',
    ]);
    expect(w.backups().map((n) => read(dir, n))).toEqual([0, 1, 2].map((i) => `${line(i)}\n`));
  });

  it('with the default clock, back-to-back rotations still get distinct names in order', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30 });
    for (let i = 0; i < 5; i++) await w.write(line(i));
    const backups = w.backups();
    expect(backups).toHaveLength(4);
    expect(new Set(backups).size).toBe(4);
    expect(backups.map((n) => read(dir, n))).toEqual([0, 1, 2, 3].map((i) => `${line(i)}\n`));
  });

  it('rejects a single write larger than maxSize and writes nothing', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30 });
    await w.write(line(0));
    await expect(w.write('x'.repeat(40))).rejects.toThrow('write length 41 exceeds maximum file size 30');
    await w.write(line(1));
    expect(w.backups()).toHaveLength(1);
    expect(read(dir, 'audit.log')).toBe(`${line(1)}\n`);
  });

  it('appends to an existing audit.log on start, but rotates it first if size + write >= maxSize', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'audit.log'), `${line(0)}\n`);
    const w1 = writer({ dir, maxSizeBytes: 60, clock: manualClock().now });
    await w1.write(line(1));
    await w1.close();
    expect(read(dir, 'audit.log')).toBe(`${line(0)}\n${line(1)}\n`);
    // 40 + 20 = 60: fits under the per-write rule (>), but the open rule is >= and rotates.
    const w2 = writer({ dir, maxSizeBytes: 60, clock: manualClock('2024-05-01T11:00:00.000Z').now });
    await w2.write(line(2));
    expect(w2.backups()).toEqual(['audit-2024-05-01T11-00-00.000.log']);
    expect(read(dir, 'audit.log')).toBe(`${line(2)}\n`);
  });

  it('creates audit.log 0600 like the apiserver and gives the new file the old file mode', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30 });
    await w.write(line(0));
    expect(fs.statSync(path.join(dir, 'audit.log')).mode & 0o777).toBe(0o600);
    fs.chmodSync(path.join(dir, 'audit.log'), 0o640);
    await w.write(line(1));
    expect(fs.statSync(path.join(dir, 'audit.log')).mode & 0o777).toBe(0o640);
  });

  it('renames, then creates: inside the gap audit.log does not exist (hook)', async () => {
    const dir = tempDir();
    const seen: { active: boolean; backup: boolean; backupContent: string }[] = [];
    const w = writer({
      dir,
      maxSizeBytes: 30,
      hooks: {
        afterRename: ({ backupName: name }) => {
          seen.push({
            active: fs.existsSync(path.join(dir, 'audit.log')),
            backup: fs.existsSync(path.join(dir, name)),
            backupContent: read(dir, name),
          });
        },
      },
    });
    await w.write(line(0));
    await w.write(line(1));
    expect(seen).toEqual([{ active: false, backup: true, backupContent: `${line(0)}\n` }]);
    expect(read(dir, 'audit.log')).toBe(`${line(1)}\n`);
  });

  it('renameGapMs lets an independent observer find audit.log missing', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30, renameGapMs: 200 });
    await w.write(line(0));
    const pending = w.write(line(1));
    let sawMissing = false;
    const deadline = Date.now() + 5_000;
    while (!sawMissing && Date.now() < deadline) {
      sawMissing = !fs.existsSync(path.join(dir, 'audit.log'));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await pending;
    expect(sawMissing).toBe(true);
    expect(fs.existsSync(path.join(dir, 'audit.log'))).toBe(true);
    expect(w.backups()).toHaveLength(1);
  });

  it('serialises un-awaited writes in call order', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 60 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => w.write(line(i))));
    const all = [...w.backups(), 'audit.log'].map((n) => read(dir, n)).join('');
    expect(all).toBe(Array.from({ length: 10 }, (_, i) => `${line(i)}\n`).join(''));
  });

  it('writeBytes writes a partial line without adding a newline', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 100 });
    await w.writeBytes('{"half":');
    expect(read(dir, 'audit.log')).toBe('{"half":');
    await w.writeBytes('1}\n');
    expect(read(dir, 'audit.log')).toBe('{"half":1}\n');
  });
});

describe('LumberjackWriter mill', () => {
  it('compresses a backup to <backup>.gz whose content equals the original, then removes the plain file', async () => {
    const dir = tempDir();
    const during: string[][] = [];
    const w = writer({
      dir,
      maxSizeBytes: 40,
      compress: true,
      clock: manualClock().now,
      hooks: { afterCompress: () => void during.push(fs.readdirSync(dir).sort()) },
    });
    await w.write(line(0));
    await w.write(line(1));
    await w.write(line(2)); // rotates
    const [plain] = w.backups();
    expect(plain).toBe('audit-2024-05-01T10-00-00.000.log');
    const original = fs.readFileSync(path.join(dir, plain as string));
    await w.mill();
    expect(w.backups()).toEqual([`${plain}.gz`]);
    expect(zlib.gunzipSync(fs.readFileSync(path.join(dir, `${plain}.gz`)))).toEqual(original);
    // For a moment both existed: the .gz complete, the plain file not yet removed.
    expect(during).toEqual([[plain, `${plain}.gz`, 'audit.log'].sort()]);
    expect(read(dir, 'audit.log')).toBe(`${line(2)}\n`);
  });

  it('runs in the background after a rotation when compressDelayMs is set', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30, compress: true, compressDelayMs: 30 });
    await w.write(line(0));
    await w.write(line(1));
    const [plain] = w.backups();
    expect(plain?.endsWith('.log')).toBe(true);
    await w.idle();
    expect(w.backups()).toEqual([`${plain}.gz`]);
    expect(w.millErrors).toEqual([]);
  });

  it('keeps only the newest maxBackups, counting a plain and a .gz of one backup once', async () => {
    const dir = tempDir();
    const clock = manualClock();
    const w = writer({ dir, maxSizeBytes: 1000, maxBackups: 2, clock: clock.now });
    for (let i = 0; i < 4; i++) {
      await w.write(line(i));
      clock.advance(1000);
      await w.rotate();
    }
    expect(w.backups()).toHaveLength(4);
    // Half-done compression of the newest backup: both forms present.
    const newest = w.backups()[3] as string;
    fs.writeFileSync(path.join(dir, `${newest}.gz`), zlib.gzipSync(fs.readFileSync(path.join(dir, newest))));
    await w.mill();
    expect(w.backups()).toEqual(['audit-2024-05-01T10-00-03.000.log', 'audit-2024-05-01T10-00-04.000.log', 'audit-2024-05-01T10-00-04.000.log.gz']);
  });

  it('removes backups older than maxAgeMs by the time in their name', async () => {
    const dir = tempDir();
    const clock = manualClock();
    const w = writer({ dir, maxSizeBytes: 1000, maxAgeMs: 60_000, clock: clock.now });
    for (const stepMs of [0, 30_000, 30_000, 30_000]) {
      clock.advance(stepMs);
      await w.write(line(0));
      await w.rotate();
    }
    // Rotations at 0s, 30s, 60s, 90s; now 90s: cutoff 30s, so only the one at 0s is older.
    await w.mill();
    expect(w.backups()).toEqual(['audit-2024-05-01T10-00-30.000.log', 'audit-2024-05-01T10-01-00.000.log', 'audit-2024-05-01T10-01-30.000.log']);
  });

  it('ignores files that are not its backups', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'audit.log.1'), 'x');
    fs.writeFileSync(path.join(dir, 'other-2024-05-01T10-00-00.000.log'), 'x');
    const w = writer({ dir, maxSizeBytes: 30, maxBackups: 1, compress: true, clock: manualClock().now });
    await w.write(line(0));
    await w.write(line(1));
    await w.mill();
    expect(fs.readdirSync(dir).sort()).toEqual(['audit-2024-05-01T10-00-00.000.log.gz', 'audit.log', 'audit.log.1', 'other-2024-05-01T10-00-00.000.log']);
  });
});

describe('scenario helpers', () => {
  it('copyTruncate copies the active file and truncates it in place', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 1000 });
    await w.write(line(0));
    await w.write(line(1));
    const ino = fs.statSync(path.join(dir, 'audit.log')).ino;
    expect(await w.copyTruncate()).toBe('audit.log.1');
    expect(read(dir, 'audit.log.1')).toBe(`${line(0)}\n${line(1)}\n`);
    expect(fs.statSync(path.join(dir, 'audit.log')).size).toBe(0);
    await w.write(line(2));
    expect(read(dir, 'audit.log')).toBe(`${line(2)}\n`);
    expect(fs.statSync(path.join(dir, 'audit.log')).ino).toBe(ino);
  });

  it('truncate({ keepOffset: true }) leaves the NUL hole lumberjack’s O_TRUNC fd really produces', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 1000 });
    await w.rotate(); // the fd now comes from openNew (no O_APPEND), as after any rotation
    await w.write(line(0));
    await w.truncate({ keepOffset: true });
    await w.write(line(1));
    const bytes = fs.readFileSync(path.join(dir, 'audit.log'));
    expect(bytes.length).toBe(40);
    expect(bytes.subarray(0, 20).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(20).toString()).toBe(`${line(1)}\n`);
  });

  it('the standalone copyTruncate works on any file and deleteBackup removes one backup', async () => {
    const dir = tempDir();
    const w = writer({ dir, maxSizeBytes: 30, clock: manualClock().now });
    await w.write(line(0));
    await w.write(line(1));
    await w.write(line(2));
    const [first, second] = w.backups();
    await w.deleteBackup(first as string);
    expect(listBackups(dir)).toEqual([second]);
    expect(await copyTruncate(dir, 'audit.log', 'audit.log-20240501')).toBe('audit.log-20240501');
    expect(read(dir, 'audit.log-20240501')).toBe(`${line(2)}\n`);
    expect(read(dir, 'audit.log')).toBe('');
  });
});
