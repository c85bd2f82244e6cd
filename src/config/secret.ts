import fs from 'node:fs';
import { z } from 'zod';
import { ErrorCode, KtrailError } from '../errors.ts';
import { rememberSecret } from '../telemetry/scrub.ts';

/**
 * A secret value given inline (`password: ${ES_PASSWORD}`) or read from a
 * file (`password: { file: /var/run/secrets/es/password }`). A file is
 * re-read when it changes (mounted Secrets and projected tokens rotate), and
 * never logged: `toJSON` masks it so a printed config cannot leak it.
 */
export class Secret {
  readonly file: string | undefined;
  #value: string | undefined;
  #mtimeMs = -1;
  #size = -1;

  constructor(source: { value?: string; file?: string }) {
    this.file = source.file;
    this.#value = source.value;
    if (source.value !== undefined) rememberSecret(source.value);
  }

  /** The current value; re-reads the file when its mtime or size changed. */
  get(): string {
    if (this.file === undefined) return this.#value ?? '';
    let st: fs.Stats;
    try {
      st = fs.statSync(this.file);
    } catch (err) {
      throw new KtrailError(ErrorCode.SECRET_READ, `cannot read secret file ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    if (st.mtimeMs !== this.#mtimeMs || st.size !== this.#size || this.#value === undefined) {
      this.#value = fs.readFileSync(this.file, 'utf8').trim();
      // Whatever the file held is masked in every later log line and printout.
      rememberSecret(this.#value);
      this.#mtimeMs = st.mtimeMs;
      this.#size = st.size;
    }
    return this.#value;
  }

  /** Forget the cached value so the next get() reads the file (after a 401, say). */
  invalidate(): void {
    this.#mtimeMs = -1;
  }

  toJSON(): string | { file: string } {
    return this.file !== undefined ? { file: this.file } : '***';
  }
}

export const secret = () =>
  z
    .union([z.string(), z.strictObject({ file: z.string().min(1) })])
    .meta({ ktrailType: 'secret' })
    .transform((v) => (typeof v === 'string' ? new Secret({ value: v }) : new Secret({ file: v.file })));
