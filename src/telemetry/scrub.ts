/**
 * Masks for everything ktrail prints about itself: the resolved config
 * (`ktrail check`), status output, and every log line.
 *
 * - URL userinfo (`https://user:pass@host` → `https://***@host`);
 * - query parameters whose name looks like a credential (token, key, secret,
 *   sig, signature, password, credential, auth, `X-Amz-*`);
 * - values of headers or config keys whose name contains auth, token, key,
 *   secret, password, credential or cookie, in any case, with hyphens or
 *   underscores (`X-Api-Key`, `x_auth_token`, `Cookie`);
 * - every secret value ktrail has read (inline `secret()` values and the
 *   contents of secret files), wherever it appears in a printed string.
 *
 * The last rule is what makes the others safe to get slightly wrong: a value
 * known to be secret is masked even inside an error message from a library.
 */

export const MASK = '***';

const SECRET_NAME = /auth|token|key|secret|passw(or)?d|pwd|credential|cookie|session|signature/i;
/** Names that match the pattern above but hold no credential (file paths, key names). */
const NOT_SECRET_NAME = /(_|-)(file|path|dir|header|id|name|field|prefix)$|^(idempotency|routing|partition)(_|-)key$|^key(_|-)(prefix|pattern|format)$/i;
const SECRET_QUERY = /^(x-amz-.*|.*(token|key|secret|sig|signature|passw(or)?d|pwd|credential|auth).*)$/i;

/** True for a header or config key whose value is a credential (`X-Api-Key`, `client_secret`, `Cookie`). */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !NOT_SECRET_NAME.test(name);
}

const known = new Set<string>();
let knownPattern: RegExp | undefined;

/**
 * Remember a secret value so that every later printout masks it. Values
 * shorter than 4 characters are not remembered: masking every "a" in a log
 * would make it unreadable and protects nothing.
 */
export function rememberSecret(value: string): void {
  if (value.length < 4 || known.has(value)) return;
  known.add(value);
  // Longest first, so a value containing another is masked whole.
  const sorted = [...known].sort((a, b) => b.length - a.length);
  knownPattern = new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
}

/** Forget remembered values (tests). */
export function forgetSecrets(): void {
  known.clear();
  knownPattern = undefined;
}

const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/** One URL with its userinfo and credential-like query values masked. */
export function maskUrl(url: string): string {
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, `$1${MASK}@`);
  const q = out.indexOf('?');
  if (q >= 0) {
    const hash = out.indexOf('#', q);
    const end = hash >= 0 ? hash : out.length;
    const query = out
      .slice(q + 1, end)
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=');
        if (eq < 0) return pair;
        let name = pair.slice(0, eq);
        try {
          name = decodeURIComponent(name);
        } catch {
          /* keep as written */
        }
        return SECRET_QUERY.test(name) ? `${pair.slice(0, eq)}=${MASK}` : pair;
      })
      .join('&');
    out = `${out.slice(0, q + 1)}${query}${out.slice(end)}`;
  }
  return out;
}

/** A printed string with remembered secret values and URL credentials masked. */
export function scrubText(text: string): string {
  let out = knownPattern !== undefined ? text.replace(knownPattern, MASK) : text;
  if (out.includes('://')) out = out.replace(URL_IN_TEXT, maskUrl);
  return out;
}

/**
 * A deep copy of a config (or any JSON-like value) that is safe to print:
 * values under credential-like names become "***", strings are scrubbed,
 * and objects that know how to print themselves safely (`Secret.toJSON`) do so.
 */
export function maskValue(value: unknown, key = ''): unknown {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return maskValue((value as { toJSON(): unknown }).toJSON(), key);
  }
  if (Array.isArray(value)) return value.map((v) => maskValue(v, key));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = maskValue(v, k);
    return out;
  }
  if (typeof value === 'string') {
    if (value !== '' && value !== MASK && isSecretName(key)) return MASK;
    return scrubText(value);
  }
  return value;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Remember the credentials a validated config holds outside `secret()`
 * fields: values under credential-like keys (header values such as
 * `X-Api-Key`), URL passwords and credential-like query values. Secret files
 * are read here too when they can be, so their contents are masked from the
 * first log line on.
 */
export function rememberConfigSecrets(value: unknown, key = ''): void {
  if (value !== null && typeof value === 'object' && typeof (value as { get?: unknown }).get === 'function' && 'file' in value) {
    try {
      (value as unknown as { get(): string }).get();
    } catch {
      /* unreadable now: remembered when it is first read */
    }
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) rememberConfigSecrets(v, key);
    return;
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) rememberConfigSecrets(v, k);
    return;
  }
  if (typeof value !== 'string') return;
  if (isSecretName(key)) rememberSecret(value);
  for (const m of value.matchAll(URL_IN_TEXT)) {
    let u: URL;
    try {
      u = new URL(m[0]);
    } catch {
      continue;
    }
    if (u.password) {
      rememberSecret(u.password);
      rememberSecret(safeDecode(u.password));
    }
    for (const [name, v] of u.searchParams) if (SECRET_QUERY.test(name)) rememberSecret(v);
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
