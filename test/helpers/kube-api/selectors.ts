// fieldSelector and labelSelector as the apiserver parses them. Field selectors only allow
// the fields a resource declares (anything else is a 400 "field label not supported"), and
// compare as strings, a missing field reading as "".
import { badRequest } from './status.ts';

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '\\' && i + 1 < text.length) {
      current += ch + (text[i + 1] as string);
      i++;
    } else if (ch === separator) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

function unescapeFieldValue(value: string): string {
  return value.replace(/\\(.)/g, '$1');
}

export function parseFieldSelector(selector: string | undefined): FieldRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  return splitUnescaped(selector, ',').map((term) => {
    // The operator is the first unescaped `!=`, `==` or `=`.
    for (let i = 0; i < term.length; i++) {
      const ch = term[i];
      if (ch === '\\') {
        i++;
        continue;
      }
      const field = term.slice(0, i).trim();
      if (ch === '!' && term[i + 1] === '=') return { field, op: '!=', value: unescapeFieldValue(term.slice(i + 2)) };
      if (ch === '=' && term[i + 1] === '=') return { field, op: '=', value: unescapeFieldValue(term.slice(i + 2)) };
      if (ch === '=') return { field, op: '=', value: unescapeFieldValue(term.slice(i + 1)) };
    }
    throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
  });
}

/** Throws the apiserver's 400 for fields the resource does not index. */
export function checkFieldsSupported(requirements: FieldRequirement[], supported: ReadonlySet<string>): void {
  for (const req of requirements) {
    if (!supported.has(req.field)) throw badRequest(`field label not supported: ${req.field}`);
  }
}

export function matchesFields(requirements: FieldRequirement[], valueOf: (field: string) => string): boolean {
  for (const req of requirements) {
    const actual = valueOf(req.field);
    if (req.op === '=' ? actual !== req.value : actual === req.value) return false;
  }
  return true;
}

export type LabelRequirement =
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'gt' | 'lt'; value: number };

function splitTopLevelCommas(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

const setTerm = /^([^\s!=<>(),]+)\s+(in|notin)\s*\(([^)]*)\)$/;
const compareTerm = /^([^\s!=<>(),]+)\s*(!=|==|=|>|<)\s*([^\s!=<>(),]*)$/;

export function parseLabelSelector(selector: string | undefined): LabelRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  return splitTopLevelCommas(selector).map((raw): LabelRequirement => {
    const term = raw.trim();
    const set = setTerm.exec(term);
    if (set) {
      const values = (set[3] as string).split(',').map((v) => v.trim()).filter((v) => v !== '');
      return { key: set[1] as string, op: set[2] as 'in' | 'notin', values };
    }
    const cmp = compareTerm.exec(term);
    if (cmp) {
      const key = cmp[1] as string;
      const value = cmp[3] as string;
      switch (cmp[2]) {
        case '!=':
          return { key, op: 'notin', values: [value] };
        case '>':
        case '<': {
          const n = Number(value);
          if (value === '' || !Number.isInteger(n)) throw badRequest(`unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer`);
          return { key, op: cmp[2] === '>' ? 'gt' : 'lt', value: n };
        }
        default:
          return { key, op: 'in', values: [value] };
      }
    }
    if (/^![^\s!=<>(),]+$/.test(term)) return { key: term.slice(1), op: '!exists' };
    if (/^[^\s!=<>(),]+$/.test(term)) return { key: term, op: 'exists' };
    throw badRequest(`unable to parse requirement: found '${term}' in label selector`);
  });
}

export function matchesLabels(requirements: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  for (const req of requirements) {
    const present = Object.hasOwn(have, req.key);
    const value = present ? have[req.key] : undefined;
    switch (req.op) {
      case 'exists':
        if (!present) return false;
        break;
      case '!exists':
        if (present) return false;
        break;
      case 'in':
        if (value === undefined || !req.values.includes(value)) return false;
        break;
      case 'notin':
        // Real label selectors: `a!=b` and `a notin (b)` also match objects without label `a`.
        if (value !== undefined && req.values.includes(value)) return false;
        break;
      case 'gt':
      case 'lt': {
        const n = value === undefined ? Number.NaN : Number(value);
        if (!Number.isInteger(n)) return false;
        if (req.op === 'gt' ? !(n > req.value) : !(n < req.value)) return false;
        break;
      }
    }
  }
  return true;
}
