import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeBatch, decodeBatchBuffer, encodeBatchBytes, Spool } from '../../src/spool/spool.ts';
import { jsonSize, type SpooledRecord } from '../../src/pipeline/record.ts';

/**
 * Batches read back as bytes (what outputs get from `readBatch`): the same
 * records as the string decoding, with each JSON line also at hand as UTF-8.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const records: SpooledRecord[] = [
  { id: 'a:ResponseComplete', timeMs: 1_715_000_000_123, input: 'audit', json: '{"k":"v"}' },
  { id: 'ünï:cödé', timeMs: 0, input: 'audit', json: '{"name":"zürich ☃ 𝄞","q":"\\"\\t"}' },
  { id: 'tab\tid', timeMs: -86_400_000, input: 'audit', json: '{\t"k" : 1}' },
  { id: 'big', timeMs: 8_640_000_000_000_000, input: 'audit', json: '{}' },
];
const plain = (r: SpooledRecord) => ({ id: r.id, timeMs: r.timeMs, input: r.input, json: r.json });

describe('spool batches as bytes', () => {
  it('decode to the same records as the string decoding, with the UTF-8 of each line', () => {
    const data = Buffer.from(encodeBatchBytes(records));
    const fromBytes = decodeBatchBuffer('audit', data);
    expect(fromBytes.map(plain)).toEqual(decodeBatch('audit', data.toString('utf8')).map(plain));
    expect(fromBytes.map(plain)).toEqual([records[0], records[1], { ...records[2], id: 'tab id' }, records[3]]);
    for (const [i, r] of fromBytes.entries()) {
      expect(r.bytes?.toString('utf8')).toBe(records[i]!.json);
      expect(jsonSize(r)).toBe(Buffer.byteLength(records[i]!.json));
    }
  });

  it('readBatch hands out byte-backed records, and re-encoding them gives the same batch', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-spool-bytes-'));
    dirs.push(dir);
    const spool = new Spool({ stateDir: dir, maxBytes: 1e9 });
    try {
      // What the spool stores: ids with tabs have them as spaces.
      const stored = Buffer.from(encodeBatchBytes(records.map((r) => ({ ...r, id: r.id.replace('\t', ' ') }))));
      const { batchId } = spool.append({ input: 'audit', records, routes: ['o'] });
      const back = spool.readBatch(batchId!);
      expect(back.every((r) => r.bytes !== undefined)).toBe(true);
      expect(back.map((r) => r.json)).toEqual(records.map((r) => r.json));
      expect(Buffer.from(encodeBatchBytes(back)).equals(stored)).toBe(true);
    } finally {
      spool.close();
    }
  });
});
