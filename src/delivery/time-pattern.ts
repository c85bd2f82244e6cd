/**
 * Names built from a record's time and a few placeholders: Elasticsearch
 * index names (`k8s-audit-%Y.%m.%d`) and S3 keys
 * (`ktrail/{input}/%Y/%m/%d/%H/{node}-{batch}.ndjson.gz`).
 *
 * Time tokens are UTC: `%Y` year, `%m` month, `%d` day, `%H` hour, `%M`
 * minute, `%%` a literal `%`. Placeholders are `{name}`; which names are
 * allowed is up to the caller. Formatting is cached per time bucket (the
 * finest unit the pattern uses), so a batch of records from the same day
 * costs one comparison per record.
 */

type Part = { kind: 'text'; text: string } | { kind: 'time'; token: 'Y' | 'm' | 'd' | 'H' | 'M' } | { kind: 'var'; name: string };

const TIME_TOKENS = new Set(['Y', 'm', 'd', 'H', 'M']);
const DAY_MS = 86_400_000;
const GRANULARITY_MS: Record<string, number> = { Y: DAY_MS, m: DAY_MS, d: DAY_MS, H: 3_600_000, M: 60_000 };

/** Parse a pattern; returns a problem text instead of throwing (for schema validation). */
export function parsePattern(pattern: string, allowedVars: readonly string[]): { parts: Part[] } | { error: string } {
  const parts: Part[] = [];
  let text = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '%') {
      const t = pattern[i + 1];
      if (t === '%') {
        text += '%';
        i++;
        continue;
      }
      if (t === undefined || !TIME_TOKENS.has(t)) {
        return { error: `unknown time token "%${t ?? ''}"; use %Y, %m, %d, %H, %M (UTC) or %% for a literal %` };
      }
      if (text) parts.push({ kind: 'text', text });
      text = '';
      parts.push({ kind: 'time', token: t as 'Y' });
      i++;
      continue;
    }
    if (c === '{') {
      const end = pattern.indexOf('}', i);
      const name = end === -1 ? '' : pattern.slice(i + 1, end);
      if (!allowedVars.includes(name)) {
        const allowed = allowedVars.map((v) => `{${v}}`).join(', ');
        return { error: `unknown placeholder "${end === -1 ? pattern.slice(i) : `{${name}}`}"; allowed: ${allowed || 'none'}` };
      }
      if (text) parts.push({ kind: 'text', text });
      text = '';
      parts.push({ kind: 'var', name });
      i = end;
      continue;
    }
    text += c;
  }
  if (text) parts.push({ kind: 'text', text });
  return { parts };
}

export class TimePattern {
  readonly pattern: string;
  readonly #parts: Part[];
  readonly #granularityMs: number;
  readonly vars: ReadonlySet<string>;
  /** Formatted names by bucket and variables; small, and cleared when it fills. */
  #cache = new Map<string, string>();

  constructor(pattern: string, allowedVars: readonly string[] = []) {
    const parsed = parsePattern(pattern, allowedVars);
    if ('error' in parsed) throw new Error(`invalid pattern ${JSON.stringify(pattern)}: ${parsed.error}`);
    this.pattern = pattern;
    this.#parts = parsed.parts;
    let g = Infinity;
    const vars = new Set<string>();
    for (const p of parsed.parts) {
      if (p.kind === 'time') g = Math.min(g, GRANULARITY_MS[p.token]!);
      if (p.kind === 'var') vars.add(p.name);
    }
    this.#granularityMs = g;
    this.vars = vars;
  }

  /** True when the result does not depend on time or variables. */
  get isConstant(): boolean {
    return this.#granularityMs === Infinity && this.vars.size === 0;
  }

  format(timeMs: number, vars: Readonly<Record<string, string>> = {}): string {
    const bucket = this.#granularityMs === Infinity ? 0 : Math.floor(timeMs / this.#granularityMs);
    let key = String(bucket);
    if (this.vars.size > 0) for (const v of this.vars) key += `\u0000${vars[v] ?? ''}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) return hit;
    const d = new Date(timeMs);
    let out = '';
    for (const p of this.#parts) {
      if (p.kind === 'text') out += p.text;
      else if (p.kind === 'var') out += vars[p.name] ?? '';
      else {
        switch (p.token) {
          case 'Y':
            out += String(d.getUTCFullYear()).padStart(4, '0');
            break;
          case 'm':
            out += String(d.getUTCMonth() + 1).padStart(2, '0');
            break;
          case 'd':
            out += String(d.getUTCDate()).padStart(2, '0');
            break;
          case 'H':
            out += String(d.getUTCHours()).padStart(2, '0');
            break;
          case 'M':
            out += String(d.getUTCMinutes()).padStart(2, '0');
            break;
        }
      }
    }
    if (this.#cache.size >= 256) this.#cache.clear();
    this.#cache.set(key, out);
    return out;
  }
}
