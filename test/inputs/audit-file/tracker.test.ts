import { describe, expect, it } from 'vitest';
import { fingerprintOf, streamPlace } from '../../../src/inputs/audit-file/identity.ts';
import { Tracker, type Observation } from '../../../src/inputs/audit-file/tracker.ts';

const fpA = fingerprintOf(Buffer.from('{"auditID":"a"}\n'))!;
const fpB = fingerprintOf(Buffer.from('{"auditID":"b"}\n'))!;
const fpC = fingerprintOf(Buffer.from('{"auditID":"c"}\n'))!;
const dir = '/var/log/kubernetes/audit';
const active = `${dir}/audit.log`;
const backup = (t: string, gz = false) => `${dir}/audit-2024-05-01T${t}.log${gz ? '.gz' : ''}`;

function obs(p: string, ino: string, size: number, fp = fpA, extra: Partial<Observation> = {}): Observation {
  return { path: p, dev: '1', ino, size, mtimeMs: 1000, compressed: p.endsWith('.gz'), fp, ...extra };
}
const opts = { nowMs: 5000, skipNew: false };

describe('identity', () => {
  it('fingerprints the first line (capped at 256 bytes) and is pending before that', () => {
    expect(fingerprintOf(Buffer.from('{"partial'))).toBeUndefined();
    const short = fingerprintOf(Buffer.from('{}\nmore'))!;
    expect(short.length).toBe(3);
    expect(fingerprintOf(Buffer.from('{}\nother stuff later'))).toEqual(short);
    const long = fingerprintOf(Buffer.alloc(300, 0x61))!;
    expect(long.length).toBe(256);
  });

  it('places lumberjack backups in the active file’s stream, ordered by the time in their name', () => {
    const a = streamPlace(backup('10-00-01.729'));
    const b = streamPlace(backup('10-00-05.043', true));
    const c = streamPlace(active);
    expect(a.streamKey).toBe(active);
    expect(b.streamKey).toBe(active);
    expect(a.orderKey).toBe(Date.UTC(2024, 4, 1, 10, 0, 1, 729));
    expect(a.orderKey).toBeLessThan(b.orderKey);
    expect(c).toEqual({ streamKey: active, orderKey: Number.POSITIVE_INFINITY, isBackup: false });
    expect(streamPlace(`${dir}/audit.log.1`).streamKey).toBe(`${dir}/audit.log.1`);
  });
});

describe('Tracker.reconcile', () => {
  it('follows a renamed file by inode and orders the stream oldest first', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 500)], opts);
    const [f] = [...t.files.values()];
    t.files.get(f!.id)!.offset = 400;
    const r = t.reconcile([obs(backup('10-00-01.000'), '10', 500), obs(active, '11', 20, fpB)], opts);
    expect(r.rotations.map((x) => x.id)).toEqual([f!.id]);
    const stream = t.stream(active);
    expect(stream.map((x) => [x.path, x.offset])).toEqual([
      [backup('10-00-01.000'), 400],
      [active, 0],
    ]);
  });

  it('hands a row over to its .gz (new inode, same content) only once the plain file is gone', () => {
    const t = new Tracker();
    t.reconcile([obs(backup('10-00-01.000'), '10', 500)], opts);
    const row = [...t.files.values()][0]!;
    row.offset = 300;
    // The .gz is being written beside its plain backup: a shadow, not a new file.
    let r = t.reconcile([obs(backup('10-00-01.000'), '10', 500), obs(backup('10-00-01.000', true), '12', 90, fpA, { gzipSize: 500 })], opts);
    expect(r.shadows).toHaveLength(1);
    expect(t.files.size).toBe(1);
    r = t.reconcile([obs(backup('10-00-01.000', true), '12', 90, fpA, { gzipSize: 500 })], opts);
    expect(r.removed).toEqual([]);
    expect(t.files.size).toBe(1);
    expect(row).toMatchObject({ ino: '12', compressed: true, offset: 300, size: 500, path: backup('10-00-01.000', true) });
  });

  it('treats a .gz seen together with its never-seen plain backup as a shadow', () => {
    const t = new Tracker();
    const r = t.reconcile([obs(backup('10-00-01.000', true), '12', 90, fpA, { gzipSize: 500 }), obs(backup('10-00-01.000'), '10', 500)], opts);
    expect(r.shadows.map((o) => o.path)).toEqual([backup('10-00-01.000', true)]);
    expect([...t.files.values()].map((f) => f.path)).toEqual([backup('10-00-01.000')]);
  });

  it('reports a file that vanished unread as a gap only after two scans missed it', () => {
    const t = new Tracker();
    t.reconcile([obs(backup('10-00-01.000'), '10', 500), obs(active, '11', 100, fpB)], opts);
    for (const f of t.files.values()) if (f.ino === '10') f.offset = 120;
    let r = t.reconcile([obs(active, '11', 100, fpB)], opts);
    expect(r.removed).toEqual([]);
    r = t.reconcile([obs(active, '11', 100, fpB)], opts);
    expect(r.removed.map((x) => [x.file.path, x.gapBytes, x.reason])).toEqual([[backup('10-00-01.000'), 380, 'deleted']]);
    // Seen again in between: not gone.
    t.reconcile([obs(active, '11', 100, fpB)], opts);
    t.reconcile([obs(active, '11', 100, fpB), obs(backup('10-00-09.000'), '13', 5, fpC)], opts);
    expect(t.files.size).toBe(2);
  });

  it('restarts a truncated file at 0 and counts what the old content still had unread', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 1000)], opts);
    const old = [...t.files.values()][0]!;
    old.offset = 900;
    const r = t.reconcile([obs(active, '10', 50, fpA)], opts);
    expect(r.replaced).toHaveLength(1);
    expect(r.replaced[0]!.old.detachReason).toBe('truncated');
    const fresh = [...t.files.values()].find((f) => f.attached)!;
    expect(fresh).toMatchObject({ ino: '10', offset: 0 });
    // The scan that saw the truncation was the first miss of the old content; this is the second.
    const r2 = t.reconcile([obs(active, '10', 60, fpA)], opts);
    expect(r2.removed.map((x) => [x.gapBytes, x.reason])).toEqual([[100, 'truncated']]);
    expect(t.files.size).toBe(1);
  });

  it('treats a reused inode with other content as a new file (never resumes at the old offset)', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 1000)], opts);
    const old = [...t.files.values()][0]!;
    old.offset = 1000;
    const r = t.reconcile([obs(active, '10', 2000, fpB)], opts);
    expect(r.replaced).toHaveLength(1);
    const fresh = [...t.files.values()].find((f) => f.attached)!;
    expect(fresh.offset).toBe(0);
    expect(fresh.fp).toEqual(fpB);
    // Same path, same inode, other first bytes: a new file, not a truncation.
    expect(r.replaced[0]!.old.detachReason).toBe('deleted');
  });

  it('keeps a row whose name is gone while its descriptor is held, and removes it once let go', () => {
    const t = new Tracker();
    t.reconcile([obs(backup('10-00-01.000'), '10', 1000), obs(active, '11', 10, fpB)], opts);
    const b = [...t.files.values()].find((f) => f.ino === '10')!;
    b.offset = 200;
    let held = true;
    const o = { ...opts, held: () => held };
    for (let i = 0; i < 3; i++) expect(t.reconcile([obs(active, '11', 10, fpB)], o).removed).toEqual([]);
    expect(b.unlisted).toBe(true);
    // Missing from every look meanwhile: once let go, it is gone at once, with nothing unread.
    expect(b.missingScans).toBe(3);
    b.offset = 1000;
    held = false;
    const r = t.reconcile([obs(active, '11', 10, fpB)], o);
    expect(r.removed.map((x) => [x.file.ino, x.gapBytes])).toEqual([['10', 0]]);
  });

  it('lets a copytruncate copy take over the old content at the old offset', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 1000)], opts);
    const old = [...t.files.values()][0]!;
    old.offset = 700;
    // Copy made (shadow while the original still has that content)...
    let r = t.reconcile([obs(active, '10', 1000), obs(`${dir}/audit.log.1`, '20', 1000)], opts);
    expect(r.shadows).toHaveLength(1);
    // ...then the original truncated and rewritten.
    r = t.reconcile([obs(active, '10', 30, fpB), obs(`${dir}/audit.log.1`, '20', 1000)], opts);
    expect(old).toMatchObject({ ino: '20', path: `${dir}/audit.log.1`, offset: 700 });
    expect(r.replaced[0]!.old).toBe(old);
    expect([...t.files.values()].find((f) => f.ino === '10')).toMatchObject({ offset: 0 });
  });

  it('skips files present at the first start with start_at: end, at their last complete line', () => {
    const t = new Tracker();
    const r = t.reconcile([obs(backup('10-00-01.000'), '10', 500, fpA, { lineEnd: 500 }), obs(active, '11', 130, fpB, { lineEnd: 120 })], { ...opts, skipNew: true });
    expect(r.skipped.map((f) => [f.path, f.offset])).toEqual([
      [backup('10-00-01.000'), 500],
      [active, 120],
    ]);
    // Later files are read from the beginning.
    const r2 = t.reconcile([obs(backup('10-00-01.000'), '10', 500), obs(active, '11', 130, fpB), obs(backup('10-00-09.000'), '12', 10, fpC)], opts);
    expect(r2.skipped).toEqual([]);
    expect([...t.files.values()].find((f) => f.ino === '12')!.offset).toBe(0);
  });

  it('skips files older than ignore_older on first sight only', () => {
    const t = new Tracker();
    const r = t.reconcile([obs(backup('10-00-01.000'), '10', 500, fpA, { mtimeMs: 100, lineEnd: 500 }), obs(active, '11', 130, fpB, { mtimeMs: 4900 })], {
      ...opts,
      ignoreOlderThanMs: 1000,
    });
    expect(r.skipped.map((f) => f.path)).toEqual([backup('10-00-01.000')]);
    expect([...t.files.values()].find((f) => f.ino === '11')!.offset).toBe(0);
  });

  it('finds a row again by fingerprint when the device number changed (reboot)', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 1000)], opts);
    const row = [...t.files.values()][0]!;
    row.offset = 800;
    t.reconcile([{ ...obs(active, '10', 1200), dev: '2' }], opts);
    expect(t.files.size).toBe(1);
    expect(row).toMatchObject({ dev: '2', offset: 800 });
  });

  it('keeps an unreadable file’s row and does not start tracking unreadable new files', () => {
    const t = new Tracker();
    t.reconcile([obs(active, '10', 1000)], opts);
    t.reconcile([obs(active, '10', 1000, undefined, { unreadable: true }), obs(backup('10-00-01.000'), '11', 5, undefined, { unreadable: true })], opts);
    t.reconcile([obs(active, '10', 1000, undefined, { unreadable: true })], opts);
    expect([...t.files.values()].map((f) => f.ino)).toEqual(['10']);
  });
});
