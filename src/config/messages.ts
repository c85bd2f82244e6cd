import type { z } from 'zod';

/**
 * Turns zod issues into what an operator needs: what is wrong at that key and
 * how to fix it, with a "did you mean" for misspelt keys.
 */

export function closestKey(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

interface ZodDefLike {
  type?: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
}

function defOf(schema: unknown): ZodDefLike | undefined {
  return (schema as { _zod?: { def?: ZodDefLike } })?._zod?.def;
}

/** The schema that validates the value at `path` (best effort, for suggestions and wording). */
export function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): unknown {
  let cur: unknown = schema;
  const unwrap = (s: unknown): unknown => {
    for (let i = 0; i < 10; i++) {
      const d = defOf(s);
      if (!d) return s;
      if (d.innerType) s = d.innerType;
      else if (d.type === 'pipe' && d.in) s = d.in;
      else if (d.type === 'union' && d.options) s = d.options.find((o) => defOf(o)?.type === 'object') ?? s;
      else return s;
      if (defOf(s)?.type === 'object') return s;
    }
    return s;
  };
  for (const seg of path) {
    cur = unwrap(cur);
    const d = defOf(cur);
    if (d?.shape && typeof seg === 'string') cur = d.shape[seg];
    else if (d?.element && typeof seg === 'number') cur = d.element;
    else if (d?.valueType) cur = d.valueType;
    else return undefined;
  }
  return unwrap(cur);
}

/** The object keys a schema accepts at `path` (best effort, for suggestions). */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const d = defOf(schemaAt(schema, path));
  return d?.shape ? Object.keys(d.shape) : [];
}

/** True when the number schema at `path` only takes integers, so "> 0" can be said as "at least 1". */
function isIntegerAt(schema: z.ZodType, path: readonly PropertyKey[]): boolean {
  type FormatDef = { format?: string; checks?: Array<{ _zod?: { def?: { format?: string } } }> };
  const d = defOf(schemaAt(schema, path)) as FormatDef | undefined;
  const isInt = (format: string | undefined) => format !== undefined && /int/.test(format);
  return isInt(d?.format) || (d?.checks ?? []).some((c) => isInt(c._zod?.def?.format));
}

function describeBound(
  issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig,
  schema: z.ZodType,
  path: readonly PropertyKey[],
): { message: string; fix: string } {
  const below = issue.code === 'too_small';
  const n = Number(below ? (issue as z.core.$ZodIssueTooSmall).minimum : (issue as z.core.$ZodIssueTooBig).maximum);
  const input = (issue as { input?: unknown }).input;
  const got = input === undefined ? '' : `${describe(input)} is too ${below ? 'small' : 'large'}: `;
  const atMost = below ? 'at least' : 'at most';
  let rule: string;
  let fix: string;
  if (issue.origin === 'array' || issue.origin === 'set') {
    rule = `must have ${atMost} ${n} item${n === 1 ? '' : 's'}`;
    fix = `list ${atMost} ${n} item${n === 1 ? '' : 's'}`;
  } else if (issue.origin === 'string') {
    rule = `must have ${atMost} ${n} character${n === 1 ? '' : 's'}`;
    fix = `write ${atMost} ${n} character${n === 1 ? '' : 's'}`;
  } else if (issue.inclusive) {
    rule = `must be ${atMost} ${n}`;
    fix = `use ${atMost} ${n}`;
  } else {
    rule = `must be ${below ? 'greater' : 'less'} than ${n}`;
    // An integer above 0 is at least 1: say the number to write.
    fix = isIntegerAt(schema, path) ? `use ${atMost} ${below ? n + 1 : n - 1}` : `use a value ${below ? 'greater' : 'less'} than ${n}`;
  }
  // A message written by the schema's author (e.g. "must be at least 1KiB") says it in the key's own units.
  if (!/^Too (small|big):/.test(issue.message)) rule = issue.message;
  return { message: `${got}${rule}`, fix };
}

export function describeIssue(
  issue: z.core.$ZodIssue,
  schema: z.ZodType,
  path: readonly PropertyKey[],
  unknownKey?: string,
): { message: string; fix?: string } {
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = keysAt(schema, path);
      const guess = unknownKey ? closestKey(unknownKey, known) : undefined;
      return {
        message: `unknown key "${unknownKey}"`,
        fix: guess ? `did you mean "${guess}"?` : known.length ? `remove it; known keys here: ${known.join(', ')}` : 'remove it',
      };
    }
    case 'invalid_type': {
      const received = (issue as { input?: unknown }).input;
      const expected = expectedName(issue.expected, schema, path);
      if (received === undefined) return { message: `required key is missing (expected ${expected})`, fix: 'add it; see docs/configuration.md' };
      return { message: `expected ${expected}, got ${describe(received)}`, fix: typeFix(issue.expected, received, schema, path) };
    }
    case 'invalid_value':
      return {
        message: `${describe((issue as { input?: unknown }).input)} is not allowed`,
        fix: `use one of: ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'invalid_union':
      return describeUnion(issue, schema, path);
    case 'too_small':
    case 'too_big':
      return describeBound(issue, schema, path);
    case 'custom': {
      const fix = (issue.params as { fix?: unknown } | undefined)?.fix;
      return typeof fix === 'string' ? { message: issue.message, fix } : { message: issue.message, fix: 'see this key in docs/configuration.md' };
    }
    case 'invalid_format': {
      const input = (issue as { input?: unknown }).input;
      const pattern = (issue as { pattern?: unknown }).pattern;
      const got = input === undefined ? '' : ` (got ${describe(input)})`;
      // A message written by the schema's author already says what to write.
      if (!issue.message.startsWith('Invalid')) return { message: `${issue.message}${got}`, fix: 'see this key in docs/configuration.md' };
      const fix = issue.format === 'regex' ? (pattern !== undefined ? `match the pattern ${String(pattern)}` : 'match the documented format') : `write a valid ${issue.format}`;
      return { message: `not a valid ${issue.format}${got}`, fix };
    }
    case 'not_multiple_of': {
      const input = (issue as { input?: unknown }).input;
      return { message: `${describe(input)} is not a multiple of ${String(issue.divisor)}`, fix: `use a multiple of ${String(issue.divisor)}` };
    }
    case 'invalid_key':
    case 'invalid_element': {
      const input = (issue as { input?: unknown }).input;
      const inner = issue.issues.map((i) => describeIssue(i, schema, path)).map((d) => d.message).join('; ');
      const what = issue.code === 'invalid_key' ? `key ${JSON.stringify((issue as { key?: unknown }).key ?? input)}` : `element ${describe(input)}`;
      return { message: `${what} is not accepted: ${inner}`, fix: issue.code === 'invalid_key' ? 'rename the key; see docs/configuration.md' : 'see docs/configuration.md' };
    }
    default: {
      const unknownIssue = issue as { message: string };
      return { message: unknownIssue.message, fix: 'see this key in docs/configuration.md' };
    }
  }
}

/**
 * A union (a secret: a string or `{ file: ... }`): when the value had the
 * type of one form, what is wrong inside that form; otherwise which forms
 * there are and what was given.
 */
function describeUnion(issue: z.core.$ZodIssueInvalidUnion, schema: z.ZodType, path: readonly PropertyKey[]): { message: string; fix: string } {
  const input = (issue as { input?: unknown }).input;
  const typeMatched = issue.errors.find((branch) => branch.length > 0 && !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
  if (typeMatched !== undefined) {
    const parts: Array<{ message: string; fix?: string }> = [];
    // Unknown keys first: "did you mean" is usually the whole fix.
    const ordered = [...typeMatched.filter((i) => i.code === 'unrecognized_keys'), ...typeMatched.filter((i) => i.code !== 'unrecognized_keys')];
    for (const i of ordered) {
      const inner = [...path, ...i.path];
      const where = i.path.length > 0 ? `${pathText(i.path)}: ` : '';
      if (i.code === 'unrecognized_keys') {
        for (const key of i.keys) {
          const d = describeIssue(i, schema, inner, key);
          parts.push({ message: `${where}${d.message}`, fix: d.fix });
        }
        continue;
      }
      const d = describeIssue(i, schema, inner);
      parts.push({ message: `${where}${d.message}`, fix: d.fix });
    }
    return { message: parts.map((p) => p.message).join('; '), fix: parts.find((p) => p.fix)?.fix ?? 'see this key in docs/configuration.md' };
  }
  const forms: string[] = [];
  for (const branch of issue.errors) {
    const top = branch.find((i) => i.code === 'invalid_type' && i.path.length === 0) as z.core.$ZodIssueInvalidType | undefined;
    if (top === undefined) continue;
    const name = expectedName(top.expected, schema, path);
    if (!forms.includes(name)) forms.push(name);
  }
  if (forms.length === 0) return { message: `${describe(input)} matches none of the forms this key takes`, fix: 'check the documented forms of this key in docs/configuration.md' };
  const keys = keysAt(schema, path);
  const fix =
    keys.length === 1 && keys[0] === 'file'
      ? 'write the value as a string (e.g. "${MY_SECRET}", from the environment) or read it from a file: { file: /path/to/secret }'
      : `write ${forms.join(' or ')} here`;
  return { message: `expected ${forms.join(' or ')}, got ${describe(input)}`, fix };
}

function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out;
}

/** The expected type in words; a mapping names the keys it takes when the schema knows them. */
function expectedName(t: string, schema: z.ZodType, path: readonly PropertyKey[]): string {
  if (t === 'object') {
    const keys = keysAt(schema, path);
    if (keys.length > 0 && keys.length <= 4) return `a mapping { ${keys.join(', ')} }`;
  }
  return typeName(t);
}

/** How to write the value the key wants, from what was given. */
function typeFix(expected: string, received: unknown, schema: z.ZodType, path: readonly PropertyKey[]): string {
  const isScalar = received === null || typeof received !== 'object';
  switch (expected) {
    case 'array':
      return isScalar && received !== null ? `write a list, e.g. [${JSON.stringify(received)}]` : 'write a list, e.g. [a, b] or one "- item" per line';
    case 'object':
    case 'record': {
      const keys = keysAt(schema, path);
      return keys.length > 0 ? `write a mapping with these keys indented below it: ${keys.join(', ')}` : 'write a mapping (key: value lines indented below it)';
    }
    case 'string':
      return isScalar && received !== null ? `quote it: "${String(received)}"` : 'write a string (quote it if it looks like a number or true/false)';
    case 'boolean':
      return 'write true or false, without quotes';
    case 'number':
      return typeof received === 'string' && /^-?\d+(\.\d+)?$/.test(received) ? `write ${received} without quotes` : 'write a number, without quotes';
    case 'int':
      return typeof received === 'number' ? `write a whole number, e.g. ${Math.round(received)}` : 'write a whole number, without quotes';
    default:
      return `write ${typeName(expected)} here`;
  }
}

function typeName(t: string): string {
  switch (t) {
    case 'object':
    case 'record':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'int':
      return 'a whole number';
    case 'boolean':
      return 'true or false';
    default:
      return t;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `"${v}"`;
  if (typeof v === 'boolean') return String(v);
  return `${typeof v} ${String(v)}`;
}
