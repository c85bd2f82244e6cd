import { z } from 'zod';

/**
 * Walks a zod schema into rows of (key path, type, default, description), so
 * that docs/configuration.md's option reference is generated from the same
 * schemas that validate configs and cannot drift from them.
 */
export interface OptionRow {
  path: string;
  type: string;
  default: string;
  required: boolean;
  description: string;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  defaultValue?: unknown;
  element?: z.ZodType;
  valueType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  options?: z.ZodType[];
  entries?: Record<string, string>;
  values?: unknown[];
}

const def = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

function meta(s: z.ZodType): { ktrailType?: string; description?: string } | undefined {
  return z.globalRegistry.get(s) as { ktrailType?: string; description?: string } | undefined;
}

function fmtDefault(v: unknown, type: string): string {
  if (typeof v === 'function') return '(computed)';
  if (v === undefined) return '';
  if (typeof v === 'number' && type === 'duration') return fmtDuration(v);
  if (typeof v === 'number' && type === 'size') return fmtSize(v);
  return JSON.stringify(v);
}

export function fmtDuration(ms: number): string {
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

export function fmtSize(bytes: number): string {
  for (const [unit, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes}`;
}

export function describeSchema(schema: z.ZodType, prefix = ''): OptionRow[] {
  const rows: OptionRow[] = [];
  const d = def(schema);
  if (d.type !== 'object' || !d.shape) return rows;
  for (const [key, child] of Object.entries(d.shape)) {
    const path = prefix ? `${prefix}.${key}` : key;
    let cur = child;
    let dflt: unknown;
    let hasDefault = false;
    let required = true;
    let description = child.description ?? meta(child)?.description ?? '';
    for (let i = 0; i < 12; i++) {
      const cd = def(cur);
      description ||= cur.description ?? meta(cur)?.description ?? '';
      if (cd.type === 'default' || cd.type === 'prefault') {
        required = false;
        if (!hasDefault && cd.type === 'default') {
          dflt = cd.defaultValue;
          hasDefault = true;
        }
        cur = cd.innerType!;
      } else if (cd.type === 'optional' || cd.type === 'nullable') {
        required = false;
        cur = cd.innerType!;
      } else break;
    }
    const type = typeName(cur);
    if (def(cur).type === 'object') {
      rows.push({ path, type: 'mapping', default: '', required, description });
      rows.push(...describeSchema(cur, path));
      continue;
    }
    rows.push({ path, type, default: hasDefault ? fmtDefault(dflt, type) : '', required, description });
  }
  return rows;
}

function typeName(s: z.ZodType): string {
  const m = meta(s)?.ktrailType;
  if (m) return m;
  const d = def(s);
  switch (d.type) {
    case 'pipe':
      return meta(d.in!)?.ktrailType ?? typeName(d.in!);
    case 'string':
      return 'string';
    case 'number':
    case 'int':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'enum':
      return Object.values(d.entries ?? {})
        .map((v) => JSON.stringify(v))
        .join(' \\| ');
    case 'literal':
      return (d.values ?? []).map((v) => JSON.stringify(v)).join(' \\| ');
    case 'array':
      return `list of ${typeName(d.element!)}`;
    case 'record':
      return `map of ${typeName(d.valueType!)}`;
    case 'union':
      return (d.options ?? []).map(typeName).join(' or ');
    case 'object':
      return 'mapping';
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return typeName(d.innerType!);
    default:
      return d.type;
  }
}
