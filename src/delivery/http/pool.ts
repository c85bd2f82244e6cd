import fs from 'node:fs';
import { Pool } from 'undici';
import { errorMessage } from '../../errors.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { TlsConfig } from './tls.ts';

/**
 * The keep-alive connection pool of an HTTP-based output, built from its TLS
 * settings (tls.ts).
 *
 * The CA, certificate and key files are read when the pool is built and
 * checked (stat) before each request: cert-manager and mounted Secrets rotate
 * them in place, so a changed file gets a new pool for the next request while
 * the old one finishes what it has in flight.
 */
export interface HttpPoolOptions {
  /** Upper bound of connections to the origin. */
  connections: number;
  tls: TlsConfig | undefined;
  log: Logger;
}

interface Built {
  pool: Pool;
  stamp: string;
}

export class HttpPool {
  readonly origin: string;
  readonly #opts: HttpPoolOptions;
  readonly #files: string[];
  #current: Built | undefined;
  #retired: Pool[] = [];

  constructor(origin: string, opts: HttpPoolOptions) {
    this.origin = origin;
    this.#opts = opts;
    const t = opts.tls;
    this.#files = [t?.ca_file, t?.cert_file, t?.key_file].filter((f): f is string => f !== undefined);
  }

  /** Build the first pool: throws when a TLS file cannot be read (a config problem worth failing start for). */
  start(): void {
    if (this.#opts.tls?.insecure_skip_verify) {
      this.#opts.log.warn({ origin: this.origin }, 'tls.insecure_skip_verify is set: the server certificate is NOT verified; use only for tests');
    }
    this.#current = this.#build(this.#stamp());
  }

  /** The pool to use for the next request (rebuilt when a TLS file changed). */
  get(): Pool {
    if (!this.#current) this.start();
    if (this.#files.length > 0) {
      const stamp = this.#stamp();
      if (stamp !== this.#current!.stamp) {
        try {
          const next = this.#build(stamp);
          const old = this.#current!.pool;
          this.#current = next;
          this.#retired.push(old);
          // Graceful: requests in flight on the old pool finish first.
          old.close().catch(() => undefined);
          this.#opts.log.info({ origin: this.origin }, 'TLS files changed; new connections use them');
        } catch (err) {
          this.#opts.log.error({ origin: this.origin, err: errorMessage(err) }, 'TLS files changed but cannot be loaded; keeping the previous ones');
          this.#current!.stamp = stamp;
        }
      }
    }
    return this.#current!.pool;
  }

  async close(): Promise<void> {
    const pools = [...this.#retired, ...(this.#current ? [this.#current.pool] : [])];
    this.#retired = [];
    this.#current = undefined;
    await Promise.allSettled(pools.map((p) => (p.closed ? Promise.resolve() : p.close())));
  }

  #stamp(): string {
    let s = '';
    for (const f of this.#files) {
      try {
        const st = fs.statSync(f);
        s += `${st.mtimeMs}:${st.size};`;
      } catch {
        s += 'missing;';
      }
    }
    return s;
  }

  #build(stamp: string): Built {
    const t = this.#opts.tls;
    const connect: Record<string, unknown> = {};
    if (t) {
      if (t.ca_file) connect.ca = fs.readFileSync(t.ca_file);
      if (t.cert_file) connect.cert = fs.readFileSync(t.cert_file);
      if (t.key_file) connect.key = fs.readFileSync(t.key_file);
      if (t.server_name) connect.servername = t.server_name;
      if (t.insecure_skip_verify) connect.rejectUnauthorized = false;
    }
    const pool = new Pool(this.origin, {
      connections: this.#opts.connections,
      // Keep-alive is undici's default; a server's Keep-Alive hint shortens this.
      keepAliveTimeout: 30_000,
      // The delivery runner's request_timeout aborts a send; these only stop a dead socket from hanging forever.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect,
    });
    return { pool, stamp };
  }
}
