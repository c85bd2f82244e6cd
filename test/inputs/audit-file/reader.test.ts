import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { GzipSource, LineSplitter, PlainSource, type LineHandler, type OversizeLine } from '../../../src/inputs/audit-file/reader.ts';
import { removeTmpDirs, tmpDir } from './harness.ts';

afterEach(removeTmpDirs);

interface Collected {
  lines: Array<{ text: string; offset: number }>;
  oversize: OversizeLine[];
}

function collector(): { handler: LineHandler; got: Collected } {
  const got: Collected = { lines: [], oversize: [] };
  return {
    got,
    handler: {
      line: (buf, start, end, offset) => got.lines.push({ text: buf.toString('utf8', start, end), offset }),
      oversize: (o) => got.oversize.push(o),
    },
  };
}

/** Feeds `data` to the splitter in pieces of `step` bytes, as reads would. */
function feed(s: LineSplitter, data: Buffer, step: number, handler: LineHandler): void {
  for (let i = 0; i < data.length; ) {
    const space = s.reserve();
    const n = Math.min(step, space.length, data.length - i);
    data.copy(space.buf, space.offset, i, i + n);
    s.commit(n, handler);
    i += n;
  }
}

describe('LineSplitter', () => {
  it('splits on newlines at any read boundary, with offsets, holding back the partial last line', () => {
    const text = 'alpha\nbeta\n\ngamma-delta\nepsilon';
    for (const step of [1, 2, 3, 5, 7, 64]) {
      const s = new LineSplitter({ bufferBytes: 16, maxLineBytes: 1024, sampleBytes: 8 });
      s.reset(100);
      const { handler, got } = collector();
      feed(s, Buffer.from(text), step, handler);
      expect(got.lines).toEqual([
        { text: 'alpha', offset: 100 },
        { text: 'beta', offset: 106 },
        { text: '', offset: 111 },
        { text: 'gamma-delta', offset: 112 },
      ]);
      expect(s.committedOffset).toBe(124);
      expect(s.readPosition).toBe(131);
      expect(s.pendingBytes).toBe(7);
      expect(s.flushPartial(handler)).toBe(true);
      expect(got.lines.at(-1)).toEqual({ text: 'epsilon', offset: 124 });
      expect(s.committedOffset).toBe(131);
      expect(s.flushPartial(handler)).toBe(false);
    }
  });

  it('grows the buffer for a long line and shrinks it again afterwards', () => {
    const s = new LineSplitter({ bufferBytes: 64, maxLineBytes: 10_000, sampleBytes: 16 });
    s.reset(0);
    const { handler, got } = collector();
    const long = 'L'.repeat(5000);
    feed(s, Buffer.from(`short\n${long}\nafter\n`), 50, handler);
    expect(got.lines.map((l) => l.text)).toEqual(['short', long, 'after']);
    expect(got.oversize).toEqual([]);
    s.reserve();
    expect(s.capacity).toBe(64);
  });

  it('accepts a line of exactly maxLineBytes and streams past a longer one, reporting its full size', () => {
    const max = 1000;
    const s = new LineSplitter({ bufferBytes: 256, maxLineBytes: max, sampleBytes: 10 });
    s.reset(0);
    const { handler, got } = collector();
    const exact = 'e'.repeat(max);
    const over = `HEAD${'o'.repeat(4990)}TAIL!`; // 4999 bytes
    feed(s, Buffer.from(`${exact}\n${over}\nnext\n`), 100, handler);
    expect(got.lines.map((l) => l.text)).toEqual([exact, 'next']);
    expect(got.oversize).toHaveLength(1);
    const o = got.oversize[0]!;
    expect(o.offset).toBe(max + 1);
    expect(o.bytes).toBe(4999);
    expect(o.head.toString()).toBe('HEADoooooo');
    expect(o.tail.toString().endsWith('TAIL!')).toBe(true);
    expect(got.lines[1]!.offset).toBe(max + 1 + 4999 + 1);
    // The buffer never held the whole oversize line.
    expect(s.capacity).toBeLessThanOrEqual(max + 1);
  });

  it('reports an oversize line found complete inside one read', () => {
    const s = new LineSplitter({ bufferBytes: 8192, maxLineBytes: 1024, sampleBytes: 4 });
    s.reset(0);
    const { handler, got } = collector();
    feed(s, Buffer.from(`${'z'.repeat(2000)}\nok\n`), 8192, handler);
    expect(got.oversize.map((o) => [o.offset, o.bytes, o.head.toString()])).toEqual([[0, 2000, 'zzzz']]);
    expect(got.lines).toEqual([{ text: 'ok', offset: 2001 }]);
  });

  it('keeps the committed offset at the start of an oversize line until it ends, and flushes it at the end of a final file', () => {
    const s = new LineSplitter({ bufferBytes: 128, maxLineBytes: 1024, sampleBytes: 4 });
    s.reset(10);
    const { handler, got } = collector();
    feed(s, Buffer.from(`a\n${'q'.repeat(3000)}`), 100, handler);
    expect(s.committedOffset).toBe(12);
    expect(s.readPosition).toBe(10 + 2 + 3000);
    expect(s.flushPartial(handler)).toBe(true);
    expect(got.oversize.map((o) => [o.offset, o.bytes])).toEqual([[12, 3000]]);
    expect(s.committedOffset).toBe(3012);
  });
});

describe('file sources', () => {
  it('PlainSource reads by position into the reused buffer', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log');
    fs.writeFileSync(file, 'one\ntwo\nthr');
    const s = new LineSplitter({ bufferBytes: 4096, maxLineBytes: 1024, sampleBytes: 4 });
    s.reset(4);
    const src = new PlainSource(await fsp.open(file, 'r'));
    const { handler, got } = collector();
    expect(await src.fill(s, handler)).toBe(7);
    expect(await src.fill(s, handler)).toBe(0);
    fs.appendFileSync(file, 'ee\n');
    expect(await src.fill(s, handler)).toBe(3);
    await src.close();
    expect(got.lines).toEqual([
      { text: 'two', offset: 4 },
      { text: 'three', offset: 8 },
    ]);
  });

  it('GzipSource resumes inside the decompressed stream at a checkpoint', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log.gz');
    const lines = Array.from({ length: 5000 }, (_, i) => `{"n":${i}}`);
    const plain = Buffer.from(`${lines.join('\n')}\n`);
    fs.writeFileSync(file, zlib.gzipSync(plain));
    const resumeAt = plain.indexOf('{"n":1234}');
    const s = new LineSplitter({ bufferBytes: 4096, maxLineBytes: 1024, sampleBytes: 4 });
    s.reset(resumeAt);
    const src = new GzipSource(await fsp.open(file, 'r'), resumeAt);
    const { handler, got } = collector();
    while ((await src.fill(s, handler)) > 0);
    await src.close();
    expect(src.ended).toBe(true);
    expect(src.shortBy).toBe(0);
    expect(got.lines.map((l) => l.text)).toEqual(lines.slice(1234));
    expect(got.lines[0]!.offset).toBe(resumeAt);
    expect(s.committedOffset).toBe(plain.length);
  });

  it('GzipSource reports a checkpoint beyond the end of the stream', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log.gz');
    fs.writeFileSync(file, zlib.gzipSync('a\nb\n'));
    const s = new LineSplitter({ bufferBytes: 4096, maxLineBytes: 1024, sampleBytes: 4 });
    s.reset(10);
    const src = new GzipSource(await fsp.open(file, 'r'), 10);
    const { handler } = collector();
    expect(await src.fill(s, handler)).toBe(0);
    expect(src.shortBy).toBe(6);
    await src.close();
  });

  it('GzipSource fails on a corrupt stream instead of inventing data', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.log.gz');
    const gz = zlib.gzipSync(Buffer.from('x'.repeat(100_000)));
    fs.writeFileSync(file, gz.subarray(0, gz.length / 2));
    const s = new LineSplitter({ bufferBytes: 4096, maxLineBytes: 1024 * 1024, sampleBytes: 4 });
    s.reset(0);
    const src = new GzipSource(await fsp.open(file, 'r'), 0);
    const { handler } = collector();
    await expect(async () => {
      while ((await src.fill(s, handler)) > 0);
    }).rejects.toThrow();
    await src.close();
  });
});
