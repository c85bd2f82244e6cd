import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { size } from '../../config/units.ts';
import type { OutboundRequest, Output, OutputContext, OutputPlugin, SendOutcome } from '../../plugin.ts';
import { errorMessage } from '../../errors.ts';

/**
 * Appends records as NDJSON to a local file and rolls it by size:
 * `ktrail.ndjson` becomes `ktrail-<UTC timestamp>.ndjson` once it would pass
 * `max_file_bytes`, and only the newest `max_files` rolled files are kept.
 * A request is acknowledged after its bytes are written (and fsynced when
 * `fsync: true`), so a crash can at worst repeat the last request.
 */
const schema = z.strictObject({
  path: z.string().min(1),
  max_file_bytes: size().default(100 * 1024 * 1024),
  max_files: z.number().int().min(0).default(5),
  fsync: z.boolean().default(false),
});
type FileConfig = z.output<typeof schema>;

class FileOutput implements Output {
  readonly #cfg: FileConfig;
  #fd: number | undefined;
  #size = 0;

  constructor(cfg: FileConfig, _ctx: OutputContext) {
    this.#cfg = cfg;
  }

  async start(): Promise<void> {
    fs.mkdirSync(path.dirname(path.resolve(this.#cfg.path)), { recursive: true });
    this.#open();
  }

  #open(): void {
    this.#fd = fs.openSync(this.#cfg.path, 'a');
    this.#size = fs.fstatSync(this.#fd).size;
  }

  #roll(): void {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    const { dir, name, ext } = path.parse(path.resolve(this.#cfg.path));
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let target = path.join(dir, `${name}-${stamp}${ext}`);
    for (let i = 1; fs.existsSync(target); i++) target = path.join(dir, `${name}-${stamp}.${i}${ext}`);
    fs.renameSync(this.#cfg.path, target);
    const rolled = fs
      .readdirSync(dir)
      .filter((f) => f.startsWith(`${name}-`) && f.endsWith(ext))
      .sort();
    for (const old of rolled.slice(0, Math.max(0, rolled.length - this.#cfg.max_files))) fs.rmSync(path.join(dir, old), { force: true });
    this.#open();
  }

  async send(request: OutboundRequest): Promise<SendOutcome> {
    let text = '';
    for (const r of request.records) text += `${r.json}\n`;
    const buf = Buffer.from(text);
    try {
      if (this.#fd === undefined) this.#open();
      if (this.#size > 0 && this.#size + buf.length > this.#cfg.max_file_bytes) this.#roll();
      let off = 0;
      while (off < buf.length) off += fs.writeSync(this.#fd!, buf, off);
      this.#size += buf.length;
      if (this.#cfg.fsync) fs.fsyncSync(this.#fd!);
      return { kind: 'ok' };
    } catch (err) {
      return { kind: 'retryable', reason: `file write failed: ${errorMessage(err)}` };
    }
  }

  async close(): Promise<void> {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export const fileOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'file',
  description: 'NDJSON appended to a local file, rolled by size.',
  schema,
  senderDefaults: { flushIntervalMs: 200 },
  create: (cfg, ctx) => new FileOutput(cfg, ctx),
};
