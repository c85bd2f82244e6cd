import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import zlib from 'node:zlib';

/**
 * The hot path: large reads into one reused Buffer, lines found with
 * `indexOf(0x0a)`. No readline, no per-line streams.
 *
 * Invariants:
 * - `committedOffset` is always just past the last complete line handed out;
 *   a partial last line stays in the buffer (never handed out) until its
 *   newline arrives, or until the caller declares the file final
 *   (`flushPartial`).
 * - Memory is bounded: the buffer grows only to hold one line of at most
 *   `maxLineBytes`; a longer line is streamed past (only a head and tail sample
 *   are kept) and reported to `oversize` with its full length.
 */

export interface OversizeLine {
  /** File offset of the line's first byte. */
  offset: number;
  /** Length of the line without its newline. */
  bytes: number;
  /** Its first `sampleBytes` bytes (copied). */
  head: Buffer;
  /** Its last bytes (copied, up to TAIL_SAMPLE_BYTES). */
  tail: Buffer;
}

export interface LineHandler {
  /**
   * One complete line: bytes `[start, end)` of `buf`, without the newline
   * (`buf[end]` is the newline unless the line was flushed at the end of a
   * file). `offset` is the file offset of `buf[start]`. The buffer is reused:
   * copy what you keep.
   */
  line(buf: Buffer, start: number, end: number, offset: number): void;
  oversize(line: OversizeLine): void;
}

export const TAIL_SAMPLE_BYTES = 1024;

export interface SplitterOptions {
  bufferBytes: number;
  maxLineBytes: number;
  sampleBytes: number;
}

interface SkipState {
  offset: number;
  bytes: number;
  head: Buffer;
  tail: Buffer;
}

export class LineSplitter {
  readonly #baseBytes: number;
  readonly #maxLineBytes: number;
  readonly #sampleBytes: number;
  #buf: Buffer;
  /** First unconsumed byte in #buf. */
  #start = 0;
  /** End of valid data in #buf. */
  #end = 0;
  /** File offset of #buf[#start]. */
  #startOffset = 0;
  #skip: SkipState | undefined;

  constructor(opts: SplitterOptions) {
    this.#baseBytes = opts.bufferBytes;
    this.#maxLineBytes = opts.maxLineBytes;
    this.#sampleBytes = Math.min(opts.sampleBytes, opts.maxLineBytes);
    this.#buf = Buffer.allocUnsafe(this.#baseBytes);
  }

  /** Forget everything; the next byte committed is at file offset `offset`. */
  reset(offset: number): void {
    this.#start = 0;
    this.#end = 0;
    this.#startOffset = offset;
    this.#skip = undefined;
    if (this.#buf.length > this.#baseBytes) this.#buf = Buffer.allocUnsafe(this.#baseBytes);
  }

  /** Offset just past the last complete line handed out. */
  get committedOffset(): number {
    return this.#skip ? this.#skip.offset : this.#startOffset;
  }

  /** File offset of the next byte to read. */
  get readPosition(): number {
    return this.#skip ? this.#skip.offset + this.#skip.bytes : this.#startOffset + (this.#end - this.#start);
  }

  /** Bytes of an incomplete last line held (or being skipped). */
  get pendingBytes(): number {
    return this.readPosition - this.committedOffset;
  }

  get capacity(): number {
    return this.#buf.length;
  }

  /** Space to read the next bytes into; always at least one byte. */
  reserve(): { buf: Buffer; offset: number; length: number } {
    if (this.#skip) {
      this.#start = 0;
      this.#end = 0;
      return { buf: this.#buf, offset: 0, length: this.#buf.length };
    }
    const partial = this.#end - this.#start;
    if (partial === 0) {
      this.#start = 0;
      this.#end = 0;
      if (this.#buf.length > this.#baseBytes) this.#buf = Buffer.allocUnsafe(this.#baseBytes);
    } else if (this.#buf.length > this.#baseBytes && partial <= this.#baseBytes / 2) {
      // A long line was consumed: give the memory back.
      const small = Buffer.allocUnsafe(this.#baseBytes);
      this.#buf.copy(small, 0, this.#start, this.#end);
      this.#buf = small;
      this.#start = 0;
      this.#end = partial;
    } else if (this.#buf.length - this.#end < this.#buf.length / 8) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#start = 0;
        this.#end = partial;
      }
      if (this.#buf.length - this.#end < this.#buf.length / 8) {
        // One line fills the buffer: grow, up to what a line of maxLineBytes needs.
        const cap = Math.min(this.#buf.length * 2, Math.max(this.#maxLineBytes + 1, this.#buf.length));
        if (cap > this.#buf.length) {
          const bigger = Buffer.allocUnsafe(cap);
          this.#buf.copy(bigger, 0, 0, this.#end);
          this.#buf = bigger;
        }
      }
    }
    return { buf: this.#buf, offset: this.#end, length: this.#buf.length - this.#end };
  }

  /** `n` bytes were written at `reserve().offset`: hand out the complete lines. */
  commit(n: number, handler: LineHandler): void {
    if (n <= 0) return;
    let from = this.#end;
    this.#end += n;
    if (this.#skip) {
      const view = this.#buf.subarray(0, this.#end);
      const nl = view.indexOf(0x0a);
      const skip = this.#skip;
      if (nl === -1) {
        skip.bytes += this.#end;
        skip.tail = keepTail(skip.tail, view);
        this.#end = 0;
        return;
      }
      skip.bytes += nl;
      skip.tail = keepTail(skip.tail, view.subarray(0, nl));
      this.#skip = undefined;
      handler.oversize({ offset: skip.offset, bytes: skip.bytes, head: skip.head, tail: skip.tail });
      this.#startOffset = skip.offset + skip.bytes + 1;
      this.#start = nl + 1;
      from = this.#start;
    }
    this.#drain(from, handler);
  }

  #drain(from: number, handler: LineHandler): void {
    const buf = this.#buf;
    const end = this.#end;
    const view = end === buf.length ? buf : buf.subarray(0, end);
    const max = this.#maxLineBytes;
    let start = this.#start;
    let offset = this.#startOffset;
    let nl = view.indexOf(0x0a, from);
    while (nl !== -1) {
      const len = nl - start;
      if (len > max) {
        handler.oversize({
          offset,
          bytes: len,
          head: Buffer.from(buf.subarray(start, start + this.#sampleBytes)),
          tail: Buffer.from(buf.subarray(Math.max(start, nl - TAIL_SAMPLE_BYTES), nl)),
        });
      } else {
        handler.line(buf, start, nl, offset);
      }
      offset += len + 1;
      start = nl + 1;
      nl = view.indexOf(0x0a, start);
    }
    this.#start = start;
    this.#startOffset = offset;
    const partial = end - start;
    if (partial > max) {
      // Longer than any line may be: stream past it, keeping samples only.
      this.#skip = {
        offset,
        bytes: partial,
        head: Buffer.from(buf.subarray(start, start + this.#sampleBytes)),
        tail: Buffer.from(buf.subarray(Math.max(start, end - TAIL_SAMPLE_BYTES), end)),
      };
      this.#start = 0;
      this.#end = 0;
    }
  }

  /**
   * The file is final (a backup that will not grow, a finished `.gz`): hand out
   * an incomplete last line as if it ended there. Returns true if there was one.
   */
  flushPartial(handler: LineHandler): boolean {
    if (this.#skip) {
      const skip = this.#skip;
      this.#skip = undefined;
      handler.oversize({ offset: skip.offset, bytes: skip.bytes, head: skip.head, tail: skip.tail });
      this.#startOffset = skip.offset + skip.bytes;
      this.#start = 0;
      this.#end = 0;
      return true;
    }
    const partial = this.#end - this.#start;
    if (partial === 0) return false;
    handler.line(this.#buf, this.#start, this.#end, this.#startOffset);
    this.#startOffset += partial;
    this.#start = this.#end;
    return true;
  }
}

function keepTail(tail: Buffer, more: Buffer): Buffer {
  if (more.length >= TAIL_SAMPLE_BYTES) return Buffer.from(more.subarray(more.length - TAIL_SAMPLE_BYTES));
  const joined = Buffer.concat([tail, more]);
  return joined.length > TAIL_SAMPLE_BYTES ? joined.subarray(joined.length - TAIL_SAMPLE_BYTES) : joined;
}

/** Where a reader gets bytes from: a plain file by position, or a decompressed `.gz` stream. */
export interface FileSource {
  readonly compressed: boolean;
  /** Reads the next bytes into the splitter (handing out complete lines); 0 when nothing more is there now. */
  fill(splitter: LineSplitter, handler: LineHandler): Promise<number>;
  close(): Promise<void>;
}

export class PlainSource implements FileSource {
  readonly compressed = false;
  readonly fh: FileHandle;

  constructor(fh: FileHandle) {
    this.fh = fh;
  }

  async fill(splitter: LineSplitter, handler: LineHandler): Promise<number> {
    const space = splitter.reserve();
    const { bytesRead } = await this.fh.read(space.buf, space.offset, space.length, splitter.readPosition);
    splitter.commit(bytesRead, handler);
    return bytesRead;
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/**
 * A `.gz` backup read as its decompressed stream. Resuming at a checkpoint
 * means decompressing and discarding up to the stored offset: gzip has no
 * random access.
 */
export class GzipSource implements FileSource {
  readonly compressed = true;
  readonly #fh: FileHandle;
  readonly #gunzip: zlib.Gunzip;
  readonly #iter: AsyncIterator<Buffer>;
  #pending: Buffer | undefined;
  #toSkip: number;
  #ended = false;
  #error: Error | undefined;

  /** `startOffset`: decompressed bytes to skip (the checkpoint). */
  constructor(fh: FileHandle, startOffset: number) {
    this.#fh = fh;
    this.#toSkip = startOffset;
    const raw: Readable = fh.createReadStream({ highWaterMark: 256 * 1024, autoClose: false, start: 0 });
    this.#gunzip = zlib.createGunzip({ chunkSize: 128 * 1024 });
    pipeline(raw, this.#gunzip, (err) => {
      if (err) this.#error ??= err;
    });
    this.#iter = this.#gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** True once the whole stream was decompressed. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes of the checkpoint that were not there (the stream ended first); 0 normally. */
  get shortBy(): number {
    return this.#ended ? this.#toSkip : 0;
  }

  async fill(splitter: LineSplitter, handler: LineHandler): Promise<number> {
    while (this.#pending === undefined || this.#pending.length === 0) {
      if (this.#ended) return 0;
      const r = await this.#iter.next();
      if (r.done) {
        if (this.#error) throw this.#error;
        this.#ended = true;
        return 0;
      }
      let chunk = r.value;
      if (this.#toSkip > 0) {
        const k = Math.min(this.#toSkip, chunk.length);
        this.#toSkip -= k;
        chunk = chunk.subarray(k);
      }
      this.#pending = chunk;
    }
    const space = splitter.reserve();
    const n = Math.min(space.length, this.#pending.length);
    this.#pending.copy(space.buf, space.offset, 0, n);
    this.#pending = this.#pending.subarray(n);
    splitter.commit(n, handler);
    return n;
  }

  async close(): Promise<void> {
    this.#gunzip.destroy();
    await this.#fh.close().catch(() => undefined);
  }
}
