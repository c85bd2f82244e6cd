import { describe, expect, it } from 'vitest';
import { pickNext, PENDING_GZ_WAIT_MS } from '../../../src/inputs/audit-file/pick.ts';
import { TrackedFile } from '../../../src/inputs/audit-file/tracker.ts';

// Which file a stream's reader reads next (pick.ts): order before everything.
const dir = '/var/log/kubernetes/audit';
let ino = 0;
function file(name: string, offset: number, size: number): TrackedFile {
  ino++;
  return new TrackedFile({
    fileId: `f${ino}`,
    path: `${dir}/${name}`,
    dev: '1',
    ino: String(ino),
    fingerprint: undefined,
    fpLen: 0,
    offset,
    size,
    compressed: name.endsWith('.gz'),
    firstSeenMs: 0,
    updatedMs: 0,
  });
}
const owner = {};
const now = 1_000_000;

describe('pickNext', () => {
  it('reads the oldest file with something left, before newer ones', () => {
    const old = file('audit-2024-05-01T10-00-00.000.log', 0, 100);
    const mid = file('audit-2024-05-01T10-05-00.000.log.gz', 0, -1);
    const active = file('audit.log', 0, 50);
    expect(pickNext([old, mid, active], undefined, owner, now)).toEqual({ file: old, rescan: false });
    old.offset = 100;
    expect(pickNext([old, mid, active], undefined, owner, now).file).toBe(mid);
    mid.size = 300;
    mid.offset = 300;
    expect(pickNext([old, mid, active], undefined, owner, now).file).toBe(active);
  });

  it('tails the newest plain file when everything is read, and never a finished .gz', () => {
    const gz = file('audit-2024-05-01T10-05-00.000.log.gz', 300, 300);
    const active = file('audit.log', 50, 50);
    expect(pickNext([gz, active], undefined, owner, now)).toEqual({ file: active, rescan: false });
    expect(pickNext([gz], undefined, owner, now).file).toBeUndefined();
  });

  it('starts nothing named after a .gz still being compressed, and asks for a rescan', () => {
    const old = file('audit-2024-05-01T10-00-00.000.log', 100, 100);
    const newer = file('audit-2024-05-01T10-10-00.000.log', 0, 100);
    const active = file('audit.log', 0, 50);
    const pending = [{ orderKey: Date.UTC(2024, 4, 1, 10, 5), mtimeMs: now - 100, seenMs: now - 50 }];
    expect(pickNext([old, newer, active], pending, owner, now)).toEqual({ file: undefined, rescan: true });
    // Seen headless long after its last write: no longer waited for.
    const stale = [{ orderKey: pending[0]!.orderKey, mtimeMs: now - PENDING_GZ_WAIT_MS - 1, seenMs: now }];
    expect(pickNext([old, newer, active], stale, owner, now)).toEqual({ file: newer, rescan: false });
  });

  it('finishes the open file but starts nothing newer while a file is missing from the last listing', () => {
    const open = file('audit-2024-05-01T10-00-00.000.log', 10, 100);
    open.openBy = owner;
    const missing = file('audit-2024-05-01T10-05-00.000.log', 0, 100);
    missing.missingScans = 1;
    const active = file('audit.log', 0, 50);
    expect(pickNext([open, missing, active], undefined, owner, now)).toEqual({ file: open, rescan: true });
    open.openBy = undefined;
    expect(pickNext([open, missing, active], undefined, owner, now)).toEqual({ file: undefined, rescan: true });
    // Gone from two listings and held: its place is final, reading goes on in order.
    missing.unlisted = true;
    missing.missingScans = 2;
    expect(pickNext([open, missing, active], undefined, owner, now)).toEqual({ file: open, rescan: false });
  });

  it('skips files another reader has open or that wait out a read error', () => {
    const a = file('audit-2024-05-01T10-00-00.000.log', 0, 100);
    const b = file('audit.log', 0, 50);
    a.openBy = {};
    expect(pickNext([a, b], undefined, owner, now).file).toBe(b);
    a.openBy = undefined;
    a.retryAtMs = now + 1;
    expect(pickNext([a, b], undefined, owner, now).file).toBe(b);
  });
});
