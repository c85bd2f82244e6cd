import { z } from 'zod';
import { secret } from '../../config/secret.ts';
import { errorMessage } from '../../errors.ts';
import type { Logger } from '../../telemetry/logger.ts';

/**
 * `Authorization` for the HTTP-based outputs: basic (username + password),
 * Elasticsearch API key, or bearer token. Secrets are `secret()` values: given
 * inline or as `{ file: ... }`, a file is re-read when it changes, so a
 * rotated token is used without a restart.
 *
 * A 401/403 from the destination is treated as retryable by every output (an
 * expired or rotated credential must not turn a log stream into dead letters);
 * `rejected()` forces the next request to re-read the files and logs the
 * problem clearly, at most once a minute.
 */

const fields = {
  username: z.string().min(1).optional().describe('Basic auth user name (with password).'),
  password: secret().optional().describe('Basic auth password: inline (use ${ENV}) or { file: path }, re-read when the file changes.'),
  api_key: secret()
    .optional()
    .describe('Elasticsearch API key: the base64 "encoded" value or "id:api_key"; inline or { file: path }.'),
  bearer_token: secret().optional().describe('Bearer token: inline or { file: path } (e.g. a projected token), re-read when the file changes.'),
};

function checkOneMethod(a: { username?: unknown; password?: unknown; api_key?: unknown; bearer_token?: unknown }, ctx: z.RefinementCtx): void {
  if ((a.username === undefined) !== (a.password === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'basic auth needs both username and password' });
  }
  const methods = [a.username !== undefined, a.api_key !== undefined, a.bearer_token !== undefined].filter(Boolean).length;
  if (methods > 1) ctx.addIssue({ code: 'custom', message: 'choose one of username/password, api_key or bearer_token' });
}

/** basic, api_key or bearer_token (Elasticsearch / OpenSearch). */
export const esAuthSchema = z.strictObject(fields).superRefine(checkOneMethod).describe('Credentials: username + password, api_key, or bearer_token.');

/** basic or bearer_token (generic HTTP). */
export const httpAuthSchema = z
  .strictObject({ username: fields.username, password: fields.password, bearer_token: fields.bearer_token })
  .superRefine(checkOneMethod)
  .describe('Credentials: username + password, or bearer_token.');

export interface AuthConfig {
  username?: string | undefined;
  /** Splunk HEC: `Authorization: Splunk <token>`. */
  splunk_token?: { get(): string; invalidate(): void } | undefined;
  password?: { get(): string; invalidate(): void } | undefined;
  api_key?: { get(): string; invalidate(): void } | undefined;
  bearer_token?: { get(): string; invalidate(): void } | undefined;
}

const REJECTED_LOG_INTERVAL_MS = 60_000;

export class Authorizer {
  readonly #cfg: AuthConfig | undefined;
  readonly #log: Logger;
  #lastRejectedLogMs = 0;

  constructor(cfg: AuthConfig | undefined, log: Logger) {
    this.#cfg = cfg;
    this.#log = log;
  }

  get method(): 'basic' | 'api_key' | 'bearer' | 'splunk' | 'none' {
    const c = this.#cfg;
    if (c?.splunk_token) return 'splunk';
    if (c?.username !== undefined) return 'basic';
    if (c?.api_key) return 'api_key';
    if (c?.bearer_token) return 'bearer';
    return 'none';
  }

  /**
   * The header value, or an error text when a secret file cannot be read (the
   * caller reports that as retryable: the file may be mounted late).
   */
  header(): { value?: string; error?: string } {
    const c = this.#cfg;
    try {
      if (c?.username !== undefined && c.password) {
        return { value: `Basic ${Buffer.from(`${c.username}:${c.password.get()}`).toString('base64')}` };
      }
      if (c?.api_key) {
        const key = c.api_key.get();
        return { value: `ApiKey ${key.includes(':') ? Buffer.from(key).toString('base64') : key}` };
      }
      if (c?.bearer_token) return { value: `Bearer ${c.bearer_token.get()}` };
      if (c?.splunk_token) return { value: `Splunk ${c.splunk_token.get()}` };
      return {};
    } catch (err) {
      return { error: `credentials unavailable: ${errorMessage(err)}` };
    }
  }

  /** The destination refused the credentials: re-read secret files next time, and say so. */
  rejected(status: number, detail: string): void {
    const c = this.#cfg;
    c?.password?.invalidate();
    c?.api_key?.invalidate();
    c?.bearer_token?.invalidate();
    c?.splunk_token?.invalidate();
    const now = Date.now();
    if (now - this.#lastRejectedLogMs < REJECTED_LOG_INTERVAL_MS) return;
    this.#lastRejectedLogMs = now;
    this.#log.error(
      { status, auth: this.method, detail: detail.slice(0, 300) },
      `destination refused the credentials (HTTP ${status}); retrying until they are fixed or rotated — nothing is dropped, the spool holds the data`,
    );
  }
}

/** `Basic` credentials written into a URL (`https://user:pass@host`), or undefined. */
export function urlBasicAuth(url: URL): string | undefined {
  if (!url.username) return undefined;
  return `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
}
