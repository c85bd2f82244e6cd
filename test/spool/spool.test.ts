import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatchBytes, readCheckpoint, Spool, SPOOL_DB_FILE, writeCheckpoint } from '../../src/spool/spool.ts';
import { migrate } from '../../src/spool/migrations.ts';
import type { SpooledRecord } from '../../src/pipeline/record.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-spool-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function recs(from: number, n: number, input = 'in'): SpooledRecord[] {
  return Array.from({ length: n }, (_, i) => ({ id: `id-${from + i}`, timeMs: from + i, input, json: JSON.stringify({ n: from + i }) }));
}

describe('spool', () => {
  it('frames records losslessly, including ids with tabs and JSON with tabs', () => {
    const records: SpooledRecord[] = [
      { id: 'a:b', timeMs: 1, input: 'x', json: '{"k":"v"}' },
      { id: 'tab\tid', timeMs: 2, input: 'x', json: '{\t"k" : 1}' },
    ];
    const back = decodeBatch('x', encodeBatchBytes(records).toString('utf8'));
    expect(back).toEqual([records[0], { ...records[1], id: 'tab id' }]);
  });

  it('commits a batch and its checkpoint in one transaction', () => {
    const dir = tmp();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    spool.append({ input: 'in', records: recs(0, 3), routes: ['o'], checkpoint: (db) => writeCheckpoint(db, 'in', 'offset', '3') });
    // A checkpoint callback that throws rolls the batch back with it.
    expect(() =>
      spool.append({
        input: 'in',
        records: recs(3, 2),
        routes: ['o'],
        checkpoint: () => {
          throw new Error('disk says no');
        },
      }),
    ).toThrow('disk says no');
    expect(spool.batches).toBe(1);
    expect(spool.records).toBe(3);
    expect(readCheckpoint(spool.db, 'in', 'offset')).toBe('3');
    expect(spool.pending('o', 0, 10).map((b) => b.recordCount)).toEqual([3]);
    spool.close();
  });

  it('deletes a batch only after every routed output acked it, in any order', () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 1e9 });
    const a = spool.append({ input: 'in', records: recs(0, 2), routes: ['es', 's3'] }).batchId!;
    const b = spool.append({ input: 'in', records: recs(2, 2), routes: ['es', 's3'] }).batchId!;
    const c = spool.append({ input: 'in', records: recs(4, 2), routes: ['es'] }).batchId!;
    spool.ack('es', [b]);
    expect(spool.batches).toBe(3);
    expect(spool.backlog('es').watermark).toBe(a - 1);
    spool.ack('es', [a, c]);
    expect(spool.batches).toBe(2); // c had only es
    expect(spool.backlog('es')).toMatchObject({ pendingBatches: 0, watermark: c });
    expect(spool.backlog('s3')).toMatchObject({ pendingBatches: 2, pendingRecords: 4, watermark: a - 1 });
    spool.ack('s3', [a]);
    expect(spool.readBatch(a)).toEqual([]);
    expect(spool.readBatch(b).map((r) => r.id)).toEqual(['id-2', 'id-3']);
    spool.ack('s3', [b]);
    expect(spool.batches).toBe(0);
    expect(spool.bytes).toBe(0);
    spool.close();
  });

  it('stores dead letters with the batch that produced them', () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 1e9 });
    spool.append({ input: 'in', records: [], routes: ['o'], deadLetters: [{ component: 'in', input: 'in', code: 'oversize', reason: 'oversize: 20 MiB', data: 'xxx' }] });
    const rows = spool.db.prepare('SELECT component, code, reason, data FROM dead_letters').all();
    expect(rows).toEqual([{ component: 'in', code: 'oversize', reason: 'oversize: 20 MiB', data: Buffer.from('xxx') }]);
    expect(spool.batches).toBe(0);
    spool.close();
  });

  it('block: waitForSpace pauses until an ack frees room, and an empty spool always takes one batch', async () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 200 });
    const big = recs(0, 20); // > 200 bytes
    expect(spool.isFull(encodeBatchBytes(big).length)).toBe(false); // empty spool accepts an oversized batch
    const id = spool.append({ input: 'in', records: big, routes: ['o'] }).batchId!;
    expect(spool.isFull(50)).toBe(true);
    let resumed = false;
    const waiting = spool.waitForSpace(50).then(() => (resumed = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(resumed).toBe(false);
    spool.ack('o', [id]);
    await waiting;
    expect(resumed).toBe(true);
    spool.close();
  });

  it('drop_newest: drops the records when full but still commits the checkpoint', () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 100 });
    spool.append({ input: 'in', records: recs(0, 10), routes: ['o'] });
    const r = spool.append({
      input: 'in',
      records: recs(10, 5),
      routes: ['o'],
      dropWhenFull: true,
      checkpoint: (db) => writeCheckpoint(db, 'in', 'next', '15'),
    });
    expect(r).toMatchObject({ batchId: undefined, dropped: 5 });
    expect(spool.records).toBe(10);
    expect(readCheckpoint(spool.db, 'in', 'next')).toBe('15');
    spool.close();
  });

  it('headroom: a caller with one is full that many bytes early (block and drop_newest); a caller without one still fits', async () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 1000 });
    const first = spool.append({ input: 'files', records: recs(0, 10), routes: ['o'] });
    const used = spool.bytes;
    expect(used).toBeGreaterThan(100);
    expect(used).toBeLessThan(500);
    const headroom = 1000 - used - 50; // the files input may add 50 bytes more, the webhook up to 1000
    expect(spool.isFull(60, headroom)).toBe(true);
    expect(spool.isFull(40, headroom)).toBe(false);
    expect(spool.isFull(60)).toBe(false);
    expect(spool.isFull(1000 - used + 1)).toBe(true);
    // drop_newest with the headroom drops; the same batch without one is stored.
    const batch = recs(10, 3);
    const size = encodeBatchBytes(batch).length;
    expect(size).toBeGreaterThan(50);
    expect(spool.append({ input: 'files', records: batch, routes: ['o'], dropWhenFull: true, headroomBytes: headroom })).toMatchObject({ batchId: undefined, dropped: 3 });
    const hook = spool.append({ input: 'hook', records: batch, routes: ['o'], dropWhenFull: true });
    expect(hook.dropped).toBe(0);
    // block: the waiter with the headroom wakes only once the ack has made room below it.
    let resumed = false;
    const waiting = spool.waitForSpace(size, undefined, headroom).then(() => (resumed = true));
    spool.ack('o', [hook.batchId!]);
    await new Promise((r) => setTimeout(r, 30));
    expect(resumed).toBe(false); // back to `used`: still no room for `size` below the headroom
    spool.ack('o', [first.batchId!]);
    await waiting;
    expect(resumed).toBe(true);
    spool.close();
  });

  it('survives reopen: byte and record totals are recomputed from the tables', () => {
    const dir = tmp();
    const s1 = new Spool({ stateDir: dir, maxBytes: 1e9 });
    s1.append({ input: 'in', records: recs(0, 7), routes: ['o'] });
    const bytes = s1.bytes;
    s1.close();
    const s2 = new Spool({ stateDir: dir, maxBytes: 1e9 });
    expect(s2.records).toBe(7);
    expect(s2.bytes).toBe(bytes);
    s2.close();
  });

  it('keeps what a removed output still owes until it is released explicitly', () => {
    const dir = tmp();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    const a = spool.append({ input: 'in', records: recs(0, 3), routes: ['old', 'new'] }).batchId!;
    spool.journalRequest('old', a, a);
    expect(spool.journaledRequests('old')).toEqual([{ firstBatch: a, lastBatch: a }]);
    spool.ack('new', [a]);
    expect([...spool.orphanedOutputs(['new'])]).toEqual([['old', { batches: 1, records: 3, bytes: spool.bytes }]]);
    expect(spool.batches).toBe(1); // still there: a rename must not drop data
    spool.close();
    const again = new Spool({ stateDir: dir, maxBytes: 1e9 });
    expect(again.orphanedOutputs(['new']).get('old')?.records).toBe(3);
    expect(again.releaseOutput('old')).toEqual({ batches: 1, records: 3, bytes: expect.any(Number) });
    expect(again.journaledRequests('old')).toEqual([]);
    expect(again.batches).toBe(0);
    expect(again.orphanedOutputs(['new']).size).toBe(0);
    again.close();
  });

  it('keeps per-output backlog totals in step with appends and acks, across reopen', () => {
    const dir = tmp();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    const a = spool.append({ input: 'in', records: recs(0, 2), routes: ['x', 'y'] }).batchId!;
    const b = spool.append({ input: 'in', records: recs(2, 3), routes: ['x'] }).batchId!;
    spool.ack('x', [a]);
    spool.ack('x', [a]); // a repeated ack changes nothing
    expect(spool.backlog('x')).toMatchObject({ pendingBatches: 1, pendingRecords: 3, watermark: b - 1 });
    expect(spool.backlog('y')).toMatchObject({ pendingBatches: 1, pendingRecords: 2, watermark: a - 1 });
    const bx = spool.backlog('x').pendingBytes;
    spool.close();
    const again = new Spool({ stateDir: dir, maxBytes: 1e9, readonly: true });
    expect(again.backlog('x')).toMatchObject({ pendingBatches: 1, pendingRecords: 3, pendingBytes: bx, watermark: b - 1 });
    again.close();
  });

  it('one process owns a state directory; the lock goes with the process, even on SIGKILL', async () => {
    const dir = tmp();
    const first = new Spool({ stateDir: dir, maxBytes: 1e9 });
    expect(() => new Spool({ stateDir: dir, maxBytes: 1e9, lockTimeoutMs: 50 })).toThrow(/in use by another ktrail process/);
    // status may read while the owner runs
    new Spool({ stateDir: dir, maxBytes: 1e9, readonly: true }).close();
    first.close();
    new Spool({ stateDir: dir, maxBytes: 1e9 }).close();
    const child = spawn(process.execPath, [path.join(import.meta.dirname, 'crash-writer.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    expect(() => new Spool({ stateDir: dir, maxBytes: 1e9, lockTimeoutMs: 50 })).toThrow(/in use/);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    new Spool({ stateDir: dir, maxBytes: 1e9, lockTimeoutMs: 2000 }).close();
  });

  it('bounds the dead-letter table: the oldest rows are pruned and reported', () => {
    const spool = new Spool({ stateDir: tmp(), maxBytes: 1e9, deadLetterMaxBytes: 10_000 });
    let pruned = 0;
    spool.onDeadLetterPrune((n) => (pruned += n));
    for (let i = 0; i < 30; i++) {
      spool.deadLetter([{ component: 'es', output: 'es', recordId: `r${i}`, code: 'http_400', reason: 'HTTP 400', data: 'x'.repeat(1000) }]);
    }
    expect(spool.deadLetterBytes).toBeLessThanOrEqual(10_000);
    expect(pruned).toBeGreaterThan(0);
    const rows = spool.db.prepare('SELECT record_id AS rid FROM dead_letters ORDER BY id').all() as Array<{ rid: string }>;
    expect(rows.length).toBe(spool.deadLetterRows);
    expect(rows.length + pruned).toBe(30);
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.at(-1)!.rid).toBe('r29'); // the newest survive
    spool.close();
  });

  it('migrates forward and refuses a database from a newer ktrail', () => {
    const dir = tmp();
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    spool.migrate('plugin_x', ['CREATE TABLE plugin_x_state (k TEXT PRIMARY KEY)']);
    spool.migrate('plugin_x', ['CREATE TABLE plugin_x_state (k TEXT PRIMARY KEY)', 'ALTER TABLE plugin_x_state ADD COLUMN v TEXT']);
    spool.db.prepare("INSERT INTO plugin_x_state (k, v) VALUES ('a', 'b')").run();
    expect(() => spool.migrate('plugin_x', ['CREATE TABLE plugin_x_state (k TEXT PRIMARY KEY)'])).toThrow(/newer than this ktrail knows/);
    spool.close();
    const db = new BetterSqlite3(path.join(dir, SPOOL_DB_FILE));
    db.prepare("UPDATE schema_versions SET version = 99 WHERE owner = 'spool'").run();
    db.close();
    expect(() => new Spool({ stateDir: dir, maxBytes: 1e9 })).toThrow(/KTRAIL|newer/);
    const db2 = new BetterSqlite3(':memory:');
    migrate(db2, 'o', ['CREATE TABLE t (a)']);
    expect(db2.prepare("SELECT version FROM schema_versions WHERE owner = 'o'").get()).toEqual({ version: 1 });
  });

  it('SIGKILL while writing leaves every committed batch and checkpoint intact, nothing half-written', async () => {
    const dir = tmp();
    const writer = path.join(import.meta.dirname, 'crash-writer.ts');
    for (let round = 0; round < 5; round++) {
      const child = spawn(process.execPath, [writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`writer exited early: ${code}`)));
      });
      await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 150)));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));

      const db = new BetterSqlite3(path.join(dir, SPOOL_DB_FILE));
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const next = Number((db.prepare("SELECT value FROM input_checkpoints WHERE input = 'crash' AND key = 'next'").get() as { value: string }).value);
      const rows = db.prepare('SELECT id, data, record_count FROM spool_batches ORDER BY id').all() as Array<{ id: number; data: string; record_count: number }>;
      const seqs = rows.flatMap((r) => decodeBatch('crash', r.data).map((x) => JSON.parse(x.json).seq as number));
      // Exactly the records below the checkpoint, each once, in order: no loss, no half batch.
      expect(seqs.length).toBe(next);
      expect(seqs.every((s, i) => s === i)).toBe(true);
      expect(rows.every((r) => decodeBatch('crash', r.data).length === r.record_count)).toBe(true);
      const deliveries = db.prepare('SELECT count(*) AS n FROM spool_deliveries').get() as { n: number };
      expect(deliveries.n).toBe(rows.length * 2);
      db.close();
    }
  });
});
