import type { FileHandle } from 'node:fs/promises';

/**
 * Descriptors held from the first scan that sees a file until the input lets
 * it go (read to its end and committed, or no longer tracked). A file that is
 * deleted or renamed meanwhile stays readable through its descriptor, so a
 * backup that lumberjack removes 200 ms after the rename is still read to its
 * end. Keyed by `dev:inode`.
 *
 * At most `max` are held (`max_open_files`); the stream readers' own open
 * file is borrowed from here (`take`) and counts against the limit too.
 */
export class HeldFiles {
  readonly max: number;
  readonly #held = new Map<string, { fh: FileHandle; path: string }>();
  #borrowed = 0;
  /** Keys of files seen while the limit was reached (not held); the input reports them. */
  readonly refused = new Set<string>();

  constructor(max: number) {
    this.max = max;
  }

  /** Descriptors open now: held plus borrowed by readers. */
  get open(): number {
    return this.#held.size + this.#borrowed;
  }

  has(key: string): boolean {
    return this.#held.has(key);
  }

  /** A copy: releasing while iterating it is fine. */
  keys(): string[] {
    return [...this.#held.keys()];
  }

  /** Hold `fh` for `key`; false (and the caller keeps `fh`) when the limit is reached or it is held already. */
  hold(key: string, fh: FileHandle, path: string): boolean {
    if (this.#held.has(key)) return false;
    if (this.open >= this.max) {
      this.refused.add(key);
      return false;
    }
    this.refused.delete(key);
    this.#held.set(key, { fh, path });
    return true;
  }

  /** The held descriptor, still held: for positional reads (a file's first record) that do not take it over. */
  peek(key: string): FileHandle | undefined {
    return this.#held.get(key)?.fh;
  }

  /** A reader takes the descriptor over; it gives it back with `returned()` once closed. */
  take(key: string): FileHandle | undefined {
    const h = this.#held.get(key);
    if (!h) return undefined;
    this.#held.delete(key);
    this.#borrowed++;
    return h.fh;
  }

  /** A reader opened a file itself (not held): it counts against the limit until `returned()`. */
  borrowedOpen(): void {
    this.#borrowed++;
  }

  returned(): void {
    this.#borrowed = Math.max(0, this.#borrowed - 1);
  }

  /** Let go of `key`'s descriptor. */
  async release(key: string): Promise<void> {
    const h = this.#held.get(key);
    if (!h) return;
    this.#held.delete(key);
    await h.fh.close().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(all.map((h) => h.fh.close().catch(() => undefined)));
  }
}
