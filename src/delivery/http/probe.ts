import { errorMessage } from '../../errors.ts';
import type { ProbeContext, ProbeResult } from '../../plugin.ts';
import { maskUrl, scrubText } from '../../telemetry/scrub.ts';
import { Authorizer, urlBasicAuth, type AuthConfig } from './auth.ts';
import { bodyDetail, readText } from './status.ts';
import { HttpPool } from './pool.ts';
import type { TlsConfig } from './tls.ts';

/**
 * `ktrail check --connect` for the HTTP-based outputs: one request, built
 * with the output's own TLS and credential code, read as a health check —
 * reachable, TLS valid, credentials accepted. Lines never carry secrets:
 * URLs are masked and answers scrubbed.
 */

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/** Why a request never got an answer: unreachable, TLS not valid, or timed out. */
export function describeTransportError(err: unknown, caHint = 'tls.ca_file'): string {
  const e = err as { name?: unknown; code?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof e?.cause?.code === 'string' ? e.cause.code : typeof e?.code === 'string' ? e.code : undefined;
  // Node appends advice about --use-system-ca to certificate errors; the fix that applies here is named below.
  const message = scrubText(typeof e?.cause?.message === 'string' ? e.cause.message : errorMessage(err)).replace(/; if the root CA is installed locally.*$/, '');
  if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL'))) {
    return `reachable, TLS NOT valid: ${message} (${code}); trust the server's CA with ${caHint}`;
  }
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') {
    return `no answer in time: ${message}`;
  }
  return `unreachable: ${message}${code !== undefined && !message.includes(code) ? ` (${code})` : ''}`;
}

export function tlsWord(url: URL): string {
  return url.protocol === 'https:' ? 'TLS valid' : 'plain HTTP (no TLS)';
}

export interface HttpProbe {
  url: URL;
  method: 'GET' | 'HEAD' | 'OPTIONS' | 'POST';
  /** Body of a POST probe (a request the destination takes as harmless, e.g. an empty OTLP export). */
  body?: Buffer;
  /** `headers` may carry credentials (an API key header), so a 401/403 means they were rejected. */
  headerCredentials?: boolean;
  /** Path and query to request on the URL's origin. */
  path: string;
  headers: Record<string, string>;
  auth: AuthConfig | undefined;
  tls: TlsConfig | undefined;
  /**
   * How to read an answer that is not 401/403: ok, or what is wrong. Default:
   * 2xx is ok, anything else is reported with its status.
   */
  judge?: (status: number, body: string) => { ok: boolean; note: string };
}

export async function probeHttp(p: HttpProbe, ctx: ProbeContext): Promise<ProbeResult> {
  const target = `${p.method} ${maskUrl(`${p.url.origin}${p.path}`)}`;
  const pool = new HttpPool(p.url.origin, { connections: 1, tls: p.tls, log: ctx.log });
  try {
    try {
      pool.start();
    } catch (err) {
      return { target, ok: false, detail: `TLS files cannot be read: ${scrubText(errorMessage(err))}` };
    }
    const headers: Record<string, string> = { 'user-agent': 'ktrail-check', ...p.headers };
    const basic = urlBasicAuth(p.url);
    if (basic) headers.authorization = basic;
    const auth = new Authorizer(p.auth, ctx.log).header();
    if (auth.error) return { target, ok: false, detail: scrubText(auth.error) };
    if (auth.value) headers.authorization = auth.value;
    const hasCredentials = headers.authorization !== undefined || p.headerCredentials === true;
    const credentials = hasCredentials ? 'credentials accepted' : 'no credentials configured, none asked for';
    let status: number;
    let body: string;
    try {
      const res = await pool.get().request({ path: p.path, method: p.method, headers, body: p.body, signal: ctx.signal, headersTimeout: 0, bodyTimeout: 0 });
      status = res.statusCode;
      body = p.method === 'HEAD' ? '' : await readText(res.body);
      if (p.method === 'HEAD') await res.body.dump().catch(() => undefined);
    } catch (err) {
      return { target, ok: false, detail: describeTransportError(err) };
    }
    const tls = tlsWord(p.url);
    const detail = scrubText(bodyDetail(body)).slice(0, 200);
    if (status === 401 || status === 403) {
      return { target, ok: false, detail: `reachable, ${tls}, credentials ${hasCredentials ? 'rejected' : 'required but none configured'} (HTTP ${status}${detail ? `: ${detail}` : ''})` };
    }
    const verdict = p.judge ? p.judge(status, body) : status >= 200 && status < 300 ? { ok: true, note: '' } : { ok: false, note: `answered HTTP ${status}${detail ? `: ${detail}` : ''}` };
    if (!verdict.ok) return { target, ok: false, detail: `reachable, ${tls}, but ${verdict.note}` };
    return { target, ok: true, detail: `reachable, ${tls}, ${credentials}${verdict.note ? ` (${verdict.note})` : ''}` };
  } finally {
    await pool.close();
  }
}
