/**
 * Request bodies are written into reused buffers instead of concatenating
 * strings: one UTF-8 copy per record, no intermediate string of the whole
 * batch, and no allocation per request once the buffers have grown to the
 * batch size.
 */
export class ByteWriter {
  #buf: Buffer;
  #len = 0;

  constructor(initialBytes = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  get length(): number {
    return this.#len;
  }

  get capacity(): number {
    return this.#buf.length;
  }

  reset(): void {
    this.#len = 0;
  }

  write(text: string): void {
    // A UTF-16 code unit is at most 3 UTF-8 bytes.
    if (this.#len + text.length * 3 > this.#buf.length) this.#grow(this.#len + text.length * 3);
    this.#len += this.#buf.write(text, this.#len, 'utf8');
  }

  /** Bytes that are already UTF-8 (a spooled record's `bytes`), copied as they are. */
  bytes(src: Uint8Array): void {
    if (this.#len + src.length > this.#buf.length) this.#grow(this.#len + src.length);
    this.#buf.set(src, this.#len);
    this.#len += src.length;
  }

  byte(b: number): void {
    if (this.#len + 1 > this.#buf.length) this.#grow(this.#len + 1);
    this.#buf[this.#len++] = b;
  }

  /** The bytes written so far: a view, valid until the next reset or write. */
  view(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }

  #grow(min: number): void {
    let size = this.#buf.length * 2;
    while (size < min) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
}

/** Writers for concurrent requests; a writer that grew past `maxKeepBytes` is dropped, not kept. */
export class ByteWriterPool {
  readonly #free: ByteWriter[] = [];
  readonly #maxKeepBytes: number;

  constructor(maxKeepBytes: number) {
    this.#maxKeepBytes = maxKeepBytes;
  }

  take(): ByteWriter {
    const w = this.#free.pop() ?? new ByteWriter();
    w.reset();
    return w;
  }

  give(w: ByteWriter): void {
    if (w.capacity <= this.#maxKeepBytes && this.#free.length < 8) this.#free.push(w);
  }
}
