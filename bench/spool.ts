import fs from 'node:fs';
import path from 'node:path';
import { Spool, encodeBatchBytes } from '../src/spool/spool.ts';
import type { SpooledRecord } from '../src/pipeline/record.ts';
import { header, measure, MiB, row, scale, tmpFile } from './lib.ts';

/**
 * Spool write throughput: batches of ~1.4 KB records appended with one
 * delivery row and a checkpoint per transaction, as an input does. Reference:
 * the same encoded bytes appended to a plain file (no SQLite, no fsync).
 */
export async function benchSpool(): Promise<void> {
  header('spool writes (batch of 500 records × ~1.4 KB, one transaction per batch)');
  const totalBytes = Math.round(256 * MiB * scale());
  const line = JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', pad: 'x'.repeat(1250) });
  const batch: SpooledRecord[] = Array.from({ length: 500 }, (_, i) => ({ id: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}:ResponseComplete`, timeMs: 1_700_000_000_000 + i, input: 'audit', json: line }));
  const encodedBytes = encodeBatchBytes(batch).length;
  const batches = Math.max(1, Math.round(totalBytes / encodedBytes));

  const refDir = tmpFile('spool-ref');
  const reference = await measure('reference: append to a plain file', () => {
    const fd = fs.openSync(path.join(refDir, 'ref.ndjson'), 'a');
    for (let i = 0; i < batches; i++) fs.writeSync(fd, encodeBatchBytes(batch));
    fs.closeSync(fd);
    return { bytes: batches * encodedBytes, events: batches * batch.length };
  });
  fs.rmSync(refDir, { recursive: true, force: true });

  const dir = tmpFile('spool');
  const spool = new Spool({ stateDir: dir, maxBytes: Number.MAX_SAFE_INTEGER });
  const ck = spool.db.prepare("INSERT OR REPLACE INTO input_checkpoints (input, key, value, updated_ms) VALUES ('audit', 'offset', ?, ?)");
  const writes = await measure('spool.append (batch + delivery + checkpoint)', () => {
    for (let i = 0; i < batches; i++) {
      spool.append({ input: 'audit', records: batch, routes: ['es'], checkpoint: () => ck.run(String(i), Date.now()) });
      // Keep the database from growing without bound, as outputs would.
      if (i % 20 === 19) spool.ack('es', spool.pending('es', 0, 100).map((b) => b.id));
    }
    return { bytes: batches * encodedBytes, events: batches * batch.length };
  });
  spool.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${row(reference)}\n${row(writes, reference)}\n`);
  process.stdout.write(`${(batches / (writes.wallMs / 1000)).toFixed(0)} batches/s committed\n`);
}
