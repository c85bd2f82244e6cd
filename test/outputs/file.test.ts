import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fileOutput, rolledNamePattern } from '../../src/outputs/file/file.ts';
import type { SpooledRecord } from '../../src/pipeline/record.ts';
import type { OutboundRequest, Output, OutputContext } from '../../src/plugin.ts';

const run = promisify(execFile);
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-file-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const line = (i: number, pad = 100) => JSON.stringify({ seq: i, pad: 'x'.repeat(pad) });

function request(from: number, n: number, pad = 100): OutboundRequest {
  const records: SpooledRecord[] = Array.from({ length: n }, (_, k) => ({ id: `r${from + k}`, timeMs: 0, input: 'gen', json: line(from + k, pad) }));
  return { key: `out-${from}`, firstBatchId: from, lastBatchId: from, records, attempt: 1 };
}

const lines = (from: number, n: number, pad = 100) => Array.from({ length: n }, (_, k) => `${line(from + k, pad)}\n`).join('');

async function open(cfg: { path: string; max_file_bytes?: number; max_files?: number; fsync?: boolean }): Promise<Output> {
  const parsed = fileOutput.schema.parse(cfg);
  // The file output uses only its context's logger.
  const output = fileOutput.create(parsed, { log: { warn: () => {} } } as unknown as OutputContext);
  await output.start?.();
  cleanups.push(() => output.close?.());
  return output;
}

const signal = () => AbortSignal.timeout(10_000);

describe('file output: rolling', () => {
  it('rolls before a request would pass max_file_bytes; the current file starts with that request', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'audit.ndjson');
    const output = await open({ path: file, max_file_bytes: 1000 });
    for (const from of [0, 3, 6]) expect(await output.send(request(from, 3), signal())).toEqual({ kind: 'ok' });
    // Each request is 3 × ~125 bytes: two fit in 1000 bytes, the third rolls.
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(6, 3));
    const rolled = fs.readdirSync(dir).filter((f) => f !== 'audit.ndjson');
    expect(rolled).toHaveLength(1);
    expect(rolled[0]).toMatch(rolledNamePattern('audit', '.ndjson'));
    expect(fs.readFileSync(path.join(dir, rolled[0]!), 'utf8')).toBe(lines(0, 6));
  });

  it('writes a request larger than max_file_bytes into an empty file rather than rolling forever', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'out.ndjson');
    const output = await open({ path: file, max_file_bytes: 100 });
    expect(await output.send(request(0, 4), signal())).toEqual({ kind: 'ok' });
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(0, 4));
    expect(fs.readdirSync(dir)).toEqual(['out.ndjson']);
  });
});

describe('file output: retention', () => {
  const siblings = [
    'audit-important.db',
    'audit-notes.ndjson',
    'audit.ndjson.bak',
    // Another output writing audit-x.ndjson rolls into these names.
    'audit-x-2020-01-01T00-00-00-000Z.ndjson',
    'audit-x.ndjson',
    // Not our extension.
    'audit-2020-01-01T00-00-00-000Z.json',
  ];

  for (const [base, ext] of [
    ['audit.ndjson', '.ndjson'],
    ['audit', ''],
  ] as const) {
    it(`keeps exactly max_files rolled files of ${base} and never touches other files`, async () => {
      const dir = tempDir();
      const file = path.join(dir, base);
      const others = ext === '' ? [...siblings, 'audit-2020-01-01T00-00-00-000Z.ndjson'] : siblings;
      for (const s of others) fs.writeFileSync(path.join(dir, s), 'keep me\n');
      const output = await open({ path: file, max_file_bytes: 300, max_files: 2 });
      // Every request fills the file: each send after the first rolls once.
      for (let i = 0; i < 6; i++) expect(await output.send(request(i * 2, 2), signal())).toEqual({ kind: 'ok' });
      const pattern = rolledNamePattern('audit', ext);
      const all = fs.readdirSync(dir);
      const rolled = all.filter((f) => pattern.test(f));
      expect(rolled).toHaveLength(2);
      // The newest two rolled files hold requests 4 and 5 (of 0..5; 6 is in the current file).
      const rolledText = rolled.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).sort();
      expect(rolledText).toEqual([lines(6, 2), lines(8, 2)].sort());
      expect(fs.readFileSync(file, 'utf8')).toBe(lines(10, 2));
      for (const s of others) expect(fs.readFileSync(path.join(dir, s), 'utf8'), `${s} was changed`).toBe('keep me\n');
      expect(all.sort()).toEqual([base, ...others, ...rolled].sort());
    });
  }

  it('orders rolled files of one millisecond by their counter (.10 after .9)', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'audit.ndjson');
    const stamp = '2020-01-01T00-00-00-000Z';
    for (const n of ['', '.2', '.9', '.10']) fs.writeFileSync(path.join(dir, `audit-${stamp}${n}.ndjson`), `old${n}\n`);
    const output = await open({ path: file, max_file_bytes: 300, max_files: 3 });
    for (let i = 0; i < 2; i++) expect(await output.send(request(i * 2, 2), signal())).toEqual({ kind: 'ok' });
    const left = fs.readdirSync(dir).filter((f) => f.includes(stamp));
    expect(left.sort()).toEqual([`audit-${stamp}.10.ndjson`, `audit-${stamp}.9.ndjson`]);
  });
});

describe('file output: durability', () => {
  it('fsyncs after every request only when fsync: true', async () => {
    const dir = tempDir();
    const fsync = vi.spyOn(fs, 'fsyncSync');
    const plain = await open({ path: path.join(dir, 'plain.ndjson') });
    await plain.send(request(0, 2), signal());
    expect(fsync).not.toHaveBeenCalled();
    const synced = await open({ path: path.join(dir, 'synced.ndjson'), fsync: true });
    await synced.send(request(0, 2), signal());
    await synced.send(request(2, 2), signal());
    expect(fsync).toHaveBeenCalledTimes(2);
    expect(fs.readFileSync(path.join(dir, 'synced.ndjson'), 'utf8')).toBe(lines(0, 4));
  });

  it('a failed fsync is retryable and its bytes are cut, so the retry does not duplicate them', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'synced.ndjson');
    const output = await open({ path: file, fsync: true });
    expect(await output.send(request(0, 2), signal())).toEqual({ kind: 'ok' });
    vi.spyOn(fs, 'fsyncSync').mockImplementationOnce(() => {
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    });
    const failed = await output.send(request(2, 2), signal());
    expect(failed).toMatchObject({ kind: 'retryable', detail: expect.stringContaining('EIO') });
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(0, 2));
    expect(await output.send(request(2, 2), signal())).toEqual({ kind: 'ok' });
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(0, 4));
  });

  it('a write torn by an error is cut back to the last whole request, so the retry appends whole lines', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'audit.ndjson');
    const moduleUrl = new URL('../../src/outputs/file/file.ts', import.meta.url).href;
    // A real partial write: RLIMIT_FSIZE (4 KiB) lets the kernel write up to the limit, then fails with EFBIG
    // (Node ignores SIGXFSZ). Request 0 is ~2.2 KB, request 1 crosses the limit.
    const child = `
      import fs from 'node:fs';
      const { fileOutput } = await import(${JSON.stringify(moduleUrl)});
      const file = ${JSON.stringify(file)};
      const line = (i, pad) => JSON.stringify({ seq: i, pad: 'x'.repeat(pad) });
      const req = (from, n, pad) => ({
        key: 'out-' + from, firstBatchId: from, lastBatchId: from, attempt: 1,
        records: Array.from({ length: n }, (_, k) => ({ id: 'r' + (from + k), timeMs: 0, input: 'gen', json: line(from + k, pad) })),
      });
      const out = fileOutput.create({ path: file, max_file_bytes: 1 << 30, max_files: 5, fsync: false }, {});
      await out.start();
      const first = await out.send(req(0, 10, 200));
      const goodSize = fs.statSync(file).size;
      const torn = await out.send(req(10, 10, 200));
      const afterTorn = fs.statSync(file).size;
      const again = await out.send(req(10, 10, 200));
      const afterAgain = fs.statSync(file).size;
      await out.close();
      console.log(JSON.stringify({ first: first.kind, torn, goodSize, afterTorn, again: again.kind, afterAgain }));
    `;
    const { stdout } = await run('bash', ['-c', 'ulimit -S -f 4 && exec "$0" --input-type=module -e "$1"', process.execPath, child], { timeout: 30_000 });
    const r = JSON.parse(stdout) as { first: string; torn: { kind: string; reason: string }; goodSize: number; afterTorn: number; again: string; afterAgain: number };
    expect(r.first).toBe('ok');
    expect(r.goodSize).toBe(Buffer.byteLength(lines(0, 10, 200)));
    expect(r.goodSize).toBeLessThan(4096);
    expect(r.torn).toMatchObject({ kind: 'retryable', detail: expect.stringContaining('EFBIG') });
    expect(r.afterTorn).toBe(r.goodSize);
    expect(r.again).toBe('retryable');
    expect(r.afterAgain).toBe(r.goodSize);
    // The retry, now without the limit, continues after the last whole line.
    const output = await open({ path: file });
    expect(await output.send(request(10, 10, 200), signal())).toEqual({ kind: 'ok' });
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(0, 20, 200));
  });
});

describe('file output: a torn last line left by a killed process', () => {
  function ctxWithLog(warnings: Array<Record<string, unknown>>): OutputContext {
    return { log: { warn: (obj: Record<string, unknown>) => warnings.push(obj) } } as unknown as OutputContext;
  }

  for (const [name, before] of [
    ['after whole lines', `${lines(0, 3)}{"seq":3,"pad":"xx`],
    ['with no whole line at all', '{"seq":0,"pad":"xx'],
    ['longer than one read chunk', `${lines(0, 2)}{"seq":2,"pad":"${'y'.repeat(200_000)}`],
  ] as const) {
    it(`is cut at start, ${name}, so the next request starts on a line of its own`, async () => {
      const file = path.join(tempDir(), 'out.ndjson');
      fs.writeFileSync(file, before);
      const warnings: Array<Record<string, unknown>> = [];
      const parsed = fileOutput.schema.parse({ path: file });
      const output = fileOutput.create(parsed, ctxWithLog(warnings));
      await output.start?.();
      cleanups.push(() => output.close?.());
      expect(await output.send(request(10, 2), signal())).toEqual({ kind: 'ok' });
      const whole = before.slice(0, before.lastIndexOf('\n') + 1);
      expect(fs.readFileSync(file, 'utf8')).toBe(whole + lines(10, 2));
      for (const l of fs.readFileSync(file, 'utf8').trimEnd().split('\n')) expect(() => JSON.parse(l)).not.toThrow();
      expect(warnings).toEqual([{ event: 'file.torn_line_cut', path: file, bytes: Buffer.byteLength(before) - Buffer.byteLength(whole) }]);
    });
  }

  it('leaves a file that ends in a newline untouched and says nothing', async () => {
    const file = path.join(tempDir(), 'out.ndjson');
    fs.writeFileSync(file, lines(0, 3));
    const warnings: Array<Record<string, unknown>> = [];
    const output = fileOutput.create(fileOutput.schema.parse({ path: file }), ctxWithLog(warnings));
    await output.start?.();
    cleanups.push(() => output.close?.());
    expect(fs.readFileSync(file, 'utf8')).toBe(lines(0, 3));
    expect(warnings).toEqual([]);
  });
});
