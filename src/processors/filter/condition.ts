import { z } from 'zod';
import { parsePath, pathValues, textNeedle, type FieldPath } from '../paths.ts';

/**
 * The condition language shared by `filter` rules and `redact` rules.
 *
 *   { field: verb, in: [get, list, watch] }
 *   { field: user.username, prefix: "system:node:" }
 *   { all: [ ... ] }  { any: [ ... ] }  { not: { ... } }
 *
 * A field condition holds when ANY value the path names satisfies it; an
 * array value counts element by element (so `user.groups` equals
 * `system:masters` when that is one of the groups). `exists: true` holds when
 * the path names at least one value that is not null.
 *
 * Conditions compile once into closures plus a raw-text pre-check: a
 * condition that needs, say, the string "secrets" somewhere in the document
 * cannot hold for a line that does not contain `"secrets"`, so such a line is
 * never parsed.
 */

export type Scalar = string | number | boolean | null;

export interface ConditionConfig {
  field?: string;
  equals?: Scalar;
  in?: Scalar[];
  prefix?: string | string[];
  regex?: string;
  exists?: boolean;
  all?: ConditionConfig[];
  any?: ConditionConfig[];
  not?: ConditionConfig;
}

export interface CompiledCondition {
  /** Whether the condition holds for the parsed document. */
  test(doc: unknown): boolean;
  /** False only when the condition certainly cannot hold for a document with this raw JSON text. */
  mayMatchRaw(raw: string): boolean;
  /**
   * Substrings at least one of which the raw text must contain for the
   * condition to hold; undefined when there is no such set. Lets a processor
   * test all its rules with one regular-expression pass per line.
   */
  needles: readonly string[] | undefined;
}

const OPERATORS = ['equals', 'in', 'prefix', 'regex', 'exists'] as const;
const COMBINATORS = ['all', 'any', 'not'] as const;

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const conditionSchema: z.ZodType<ConditionConfig> = z.lazy(() =>
  z
    .strictObject({
      field: z.string().min(1).optional(),
      equals: scalar.optional(),
      in: z.array(scalar).min(1).optional(),
      prefix: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
      regex: z.string().optional(),
      exists: z.boolean().optional(),
      all: z.array(conditionSchema).min(1).optional(),
      any: z.array(conditionSchema).min(1).optional(),
      not: conditionSchema.optional(),
    })
    .superRefine((c, ctx) => {
      const ops = OPERATORS.filter((k) => c[k] !== undefined);
      const combs = COMBINATORS.filter((k) => c[k] !== undefined);
      const shape = 'write { field: <path>, <equals|in|prefix|regex|exists>: ... } or one of { all: [...] }, { any: [...] }, { not: {...} }';
      if (combs.length > 0) {
        if (combs.length > 1 || ops.length > 0 || c.field !== undefined) {
          ctx.addIssue({ code: 'custom', message: `a condition is either one combinator (all, any, not) or one field test; ${shape}` });
        }
        return;
      }
      if (c.field === undefined) {
        ctx.addIssue({ code: 'custom', message: `the condition has no "field"; ${shape}` });
        return;
      }
      if (ops.length !== 1) {
        ctx.addIssue({ code: 'custom', message: `a field condition needs exactly one of ${OPERATORS.join(', ')} (got ${ops.length === 0 ? 'none' : ops.join(', ')})` });
      }
      try {
        parsePath(c.field);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['field'], message: (err as Error).message });
      }
      if (c.regex !== undefined) {
        try {
          new RegExp(c.regex, 'u');
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: ['regex'], message: `invalid regular expression: ${(err as Error).message}` });
        }
      }
    }),
);

const ALWAYS = (): boolean => true;

/** Compiles a validated condition. Throws only for input the schema would have rejected. */
export function compileCondition(c: ConditionConfig): CompiledCondition {
  if (c.all !== undefined) {
    const parts = c.all.map(compileCondition);
    return {
      test: (doc) => parts.every((p) => p.test(doc)),
      mayMatchRaw: (raw) => parts.every((p) => p.mayMatchRaw(raw)),
      // Every part must hold, so any constrained part's needles are necessary.
      needles: parts.find((p) => p.needles !== undefined)?.needles,
    };
  }
  if (c.any !== undefined) {
    const parts = c.any.map(compileCondition);
    return {
      test: (doc) => parts.some((p) => p.test(doc)),
      mayMatchRaw: (raw) => parts.some((p) => p.mayMatchRaw(raw)),
      needles: parts.every((p) => p.needles !== undefined) ? parts.flatMap((p) => p.needles!) : undefined,
    };
  }
  if (c.not !== undefined) {
    const inner = compileCondition(c.not);
    // Absence of text proves nothing about a negation.
    return { test: (doc) => !inner.test(doc), mayMatchRaw: ALWAYS, needles: undefined };
  }
  if (c.field === undefined) throw new Error('condition without field');
  const path = parsePath(c.field);
  if (c.exists !== undefined) return existsCondition(path, c.exists);
  let match: (v: Scalar) => boolean;
  let needles: Array<string | undefined>;
  if (c.equals !== undefined) {
    const want = c.equals;
    match = (v) => v === want;
    needles = [scalarNeedle(want)];
  } else if (c.in !== undefined) {
    const set = new Set<Scalar>(c.in);
    match = (v) => set.has(v);
    needles = c.in.map(scalarNeedle);
  } else if (c.prefix !== undefined) {
    const prefixes = Array.isArray(c.prefix) ? c.prefix : [c.prefix];
    match = (v) => typeof v === 'string' && prefixes.some((p) => v.startsWith(p));
    needles = prefixes.map((p) => textNeedle(p, 'prefix'));
  } else if (c.regex !== undefined) {
    const re = new RegExp(c.regex, 'u');
    match = (v) => typeof v === 'string' && re.test(v);
    needles = [undefined];
  } else {
    throw new Error(`condition on ${c.field} has no operator`);
  }
  const constrained = needles.every((n) => n !== undefined) ? (needles as string[]) : undefined;
  const mayMatchRaw = constrained === undefined ? ALWAYS : (raw: string) => constrained.some((n) => raw.includes(n));
  return {
    needles: constrained,
    test: (doc) => {
      for (const v of pathValues(doc, path)) {
        if (Array.isArray(v)) {
          for (const e of v) if (isScalar(e) && match(e)) return true;
        } else if (isScalar(v) && match(v)) return true;
      }
      return false;
    },
    mayMatchRaw,
  };
}

function existsCondition(path: FieldPath, want: boolean): CompiledCondition {
  const test = (doc: unknown) => pathValues(doc, path).some((v) => v !== null && v !== undefined) === want;
  if (!want) return { test, mayMatchRaw: ALWAYS, needles: undefined };
  const last = path.segments.at(-1);
  const needle = last?.kind === 'key' ? textNeedle(last.key, 'quoted') : undefined;
  if (needle === undefined) return { test, mayMatchRaw: ALWAYS, needles: undefined };
  return { test, mayMatchRaw: (raw) => raw.includes(needle), needles: [needle] };
}

function scalarNeedle(v: Scalar): string | undefined {
  return typeof v === 'string' ? textNeedle(v, 'quoted') : undefined;
}

function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}
