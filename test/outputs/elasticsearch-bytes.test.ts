import { describe, expect, it } from 'vitest';
import { ByteWriter } from '../../src/delivery/byte-writer.ts';
import { TimePattern } from '../../src/delivery/time-pattern.ts';
import { BulkEncoder, IsoTime } from '../../src/outputs/elasticsearch/bulk.ts';
import { SpooledBytesRecord, type SpooledRecord } from '../../src/pipeline/record.ts';

/**
 * `_bulk` bodies from records read as bytes (the spool's usual case) are the
 * bodies the string path writes, byte for byte: `@timestamp` spliced in the
 * same place, or left out for the same documents.
 */
const docs = [
  '{"a":1}',
  '{}',
  '{ }',
  ' { "a": 1 }',
  '{ "a": 1 }',
  '{"@timestamp":"x","a":1}',
  '{"b":{"@timestamp":"x"}}',
  '{"s":"@timestamp"}',
  '[1]',
  '{"@timestamp": broken',
  '{"name":"zürich ☃ 𝄞"}',
];

function body(records: SpooledRecord[], addTimestamp: boolean): string {
  const enc = new BulkEncoder({ opType: 'create', target: new TimePattern('bench-%Y.%m.%d', ['input']), addTimestamp });
  const w = new ByteWriter(16);
  enc.encode(w, records);
  return w.view().toString('utf8');
}

describe('bulk bodies from spooled bytes', () => {
  for (const addTimestamp of [true, false]) {
    it(`equal the string path's (add_timestamp: ${addTimestamp})`, () => {
      const t = Date.UTC(2025, 4, 6, 7, 8, 9, 10);
      const asText: SpooledRecord[] = docs.map((json, i) => ({ id: `id-${i}`, timeMs: t + i * 997, input: 'audit', json }));
      const asBytes = asText.map((r) => new SpooledBytesRecord(r.id, r.timeMs, r.input, Buffer.from(r.json)));
      expect(body(asBytes, addTimestamp)).toBe(body(asText, addTimestamp));
      if (addTimestamp) expect(body(asBytes, true)).toContain('{"@timestamp":"2025-05-06T07:08:09.010Z","a":1}');
    });
  }
});

describe('IsoTime', () => {
  it('formats like Date#toISOString, in and out of order, across seconds, days and odd years', () => {
    const iso = new IsoTime();
    const times = [0, 1, 999, 1000, 1001, 59_999, 60_000, Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2024, 2, 1), -1, -1001, Date.UTC(10_000, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 5), 1.5];
    for (let i = 0; i < 2000; i++) times.push(1_700_000_000_000 + Math.floor(i * 733.7), 1_700_000_000_000 - i * 1_000_003);
    for (const t of times) expect(iso.format(t), String(t)).toBe(new Date(t).toISOString());
  });
});
