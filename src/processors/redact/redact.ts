import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import { secret, type Secret } from '../../config/secret.ts';
import { errorMessage } from '../../errors.ts';
import type { LogRecord } from '../../pipeline/record.ts';
import type { ComponentContext, Processor, ProcessorPlugin } from '../../plugin.ts';
import { compileCondition, conditionSchema, type CompiledCondition } from '../filter/condition.ts';
import { ruleNameSchema } from '../filter/filter.ts';
import { anyNeedle, parsePath, pathNeedle, visitPath, type FieldPath } from '../paths.ts';
import { DEFAULT_REDACT_RULES, type RedactRuleConfig } from './default-rules.ts';
import { redactEvent, redactLogEvents, redactMetrics } from './telemetry.ts';

/**
 * Removes or masks fields by path, optionally only when a condition holds.
 * The default rules (default-rules.ts) run first, then the configured ones,
 * in order. Each changed field is counted in
 * `ktrail_redact_fields_total{rule=...}`.
 *
 * A raw line is parsed only when a rule may apply to it: its condition's
 * needles and one of its paths' keys must occur in the text. Lines no rule
 * touches keep their exact bytes.
 *
 * Fail closed: a line that a rule may apply to but that is not valid JSON
 * cannot be redacted, so it is dropped (counted as discarded, reason
 * `unparsable`) unless `unparsable: keep`.
 */

const ruleSchema = z
  .strictObject({
    name: ruleNameSchema,
    action: z.enum(['remove', 'mask']).default('remove'),
    paths: z.array(z.string().min(1)).min(1),
    when: conditionSchema.optional(),
    mask_with: z.enum(['text', 'sha256']).default('text'),
    mask_text: z.string().default('[REDACTED]'),
    hash_chars: z.number().int().min(8).max(64).default(16),
  })
  .superRefine((r, ctx) => {
    r.paths.forEach((p, i) => {
      try {
        parsePath(p);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['paths', i], message: (err as Error).message });
      }
    });
  });

const schema = z
  .strictObject({
    defaults: z.boolean().default(true).describe('Apply the built-in rules (Secret, TokenReview and ServiceAccount token bodies; last-applied-configuration) before the configured ones.'),
    rules: z
      .array(ruleSchema)
      .default([])
      .describe('Rules applied in order: { name, paths: [...], action: remove|mask, when?, mask_with: text|sha256, mask_text, hash_chars }.'),
    // Without a key, short values (user names) can be guessed back from their hash.
    hash_key: secret().optional().describe('Key for mask_with: sha256, making it an HMAC-SHA256 (recommended for guessable values); a file is re-read when it changes.'),
    unparsable: z
      .enum(['drop', 'keep'])
      .default('drop')
      .describe('A line a rule may apply to but that is not valid JSON cannot be redacted: drop it (counted) or keep it as is.'),
  })
  .superRefine((c, ctx) => {
    const seen = new Set(c.defaults ? DEFAULT_REDACT_RULES.map((r) => r.name) : []);
    c.rules.forEach((r, i) => {
      if (seen.has(r.name)) {
        const builtIn = DEFAULT_REDACT_RULES.some((d) => d.name === r.name) && c.defaults;
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, 'name'],
          message: builtIn ? `"${r.name}" is the name of a default rule; pick another name` : `rule name "${r.name}" is used twice; names label the metrics, so each must be unique`,
        });
      }
      seen.add(r.name);
    });
  });
export type RedactConfig = z.output<typeof schema>;

interface CompiledRule {
  name: string;
  remove: boolean;
  paths: FieldPath[];
  when: CompiledCondition | undefined;
  /** Each path's best needle; undefined when a path has none (then the rule always may apply). */
  needles: Array<string | undefined>;
  maskValue: (v: unknown) => string;
}

type Container = Record<string, unknown> | unknown[];

export class RedactProcessor implements Processor {
  readonly #rules: CompiledRule[];
  /** Matches a raw line only if some rule may apply to it; undefined when a rule has no needles. */
  readonly #prefilter: RegExp | undefined;
  readonly #ctx: ComponentContext;
  readonly #dropUnparsable: boolean;
  #unparsableLogged = false;

  constructor(cfg: RedactConfig, ctx: ComponentContext) {
    this.#ctx = ctx;
    this.#dropUnparsable = cfg.unparsable === 'drop';
    const all = cfg.defaults ? [...DEFAULT_REDACT_RULES, ...cfg.rules] : cfg.rules;
    this.#rules = all.map((r) => compileRule(r, cfg.hash_key));
    const sets = this.#rules.map(necessaryNeedles);
    this.#prefilter = sets.every((n) => n !== undefined) ? anyNeedle(sets.flat() as string[]) : undefined;
  }

  /** Names of the rules in the order they run (defaults first). */
  get ruleNames(): string[] {
    return this.#rules.map((r) => r.name);
  }

  process(records: LogRecord[]): LogRecord[] {
    const kept: LogRecord[] = [];
    const counts = new Map<string, number>();
    const dropped = new Map<string, number>();
    for (const record of records) {
      const dropReason = this.#redact(record, counts);
      if (dropReason === undefined) kept.push(record);
      else dropped.set(dropReason, (dropped.get(dropReason) ?? 0) + 1);
    }
    for (const [rule, n] of counts) redactMetrics(this.#ctx.metrics).fields.inc({ processor: this.#ctx.name, rule }, n);
    for (const [reason, n] of dropped) this.#ctx.telemetry.discarded(reason, n);
    return kept;
  }

  /**
   * The pre-check that decides whether a rule may apply, on text that will
   * not be parsed: a rule's literal keys occur in it (and, for whole text,
   * its condition's). For a part of the content the condition is not
   * consulted, since it may hold in the rest.
   */
  mayChange(text: string, partial: boolean): boolean {
    if (partial) return this.#rules.some((r) => r.needles.some((n) => n === undefined || text.includes(n)));
    if (this.#prefilter !== undefined && !this.#prefilter.test(text)) return false;
    return this.#rules.some((r) => mayApply(r, text));
  }

  /** Applies every rule; returns why the record must be dropped, or undefined to keep it. */
  #redact(record: LogRecord, counts: Map<string, number>): string | undefined {
    const unparsed = record.unparsed;
    if (unparsed !== undefined) {
      // A wrapper around text the input could not parse (pass_raw, truncate):
      // the wrapper parses, but the secret would sit unredacted inside it.
      if (!this.mayChange(unparsed.text, unparsed.partial)) return undefined;
      return this.#unparsable(record, undefined, 'the input could not parse it');
    }
    if (record.raw !== undefined && this.#prefilter !== undefined && !this.#prefilter.test(record.raw)) return undefined;
    for (const rule of this.#rules) {
      const raw = record.raw;
      if (raw !== undefined && !mayApply(rule, raw)) continue;
      let doc: unknown;
      try {
        doc = record.doc;
      } catch (err) {
        return this.#unparsable(record, rule.name, errorMessage(err));
      }
      try {
        if (rule.when !== undefined && !rule.when.test(doc)) continue;
        const targets = collectTargets(doc, rule.paths);
        if (targets.length === 0) continue;
        record.mutate(() => apply(rule, targets));
        counts.set(rule.name, (counts.get(rule.name) ?? 0) + targets.length);
      } catch (err) {
        // Not expected (paths and conditions are total functions on JSON);
        // if it happens, shipping half-redacted data is the worse outcome.
        this.#ctx.telemetry.error('redact_failed');
        this.#ctx.log.error({ event: redactEvent.rule_failed, recordId: record.id, rule: rule.name, err: errorMessage(err) }, 'redact: rule failed; record dropped');
        return 'redact_failed';
      }
    }
    return undefined;
  }

  #unparsable(record: LogRecord, rule: string | undefined, why: string): string | undefined {
    this.#ctx.telemetry.error('unparsable');
    if (!this.#unparsableLogged) {
      this.#unparsableLogged = true;
      this.#ctx.log.warn(
        { event: redactEvent.unparsable, recordId: record.id, rule, err: why, action: this.#dropUnparsable ? 'dropped' : 'kept' },
        'redact: a rule may apply to a record that is not valid JSON, so it cannot be redacted (logged once)',
      );
    }
    return this.#dropUnparsable ? 'unparsable' : undefined;
  }
}

function compileRule(r: RedactRuleConfig, hashKey: Secret | undefined): CompiledRule {
  const paths = r.paths.map(parsePath);
  return {
    name: r.name,
    remove: r.action === 'remove',
    paths,
    when: r.when === undefined ? undefined : compileCondition(r.when),
    needles: paths.map(pathNeedle),
    maskValue: masker(r, hashKey),
  };
}

/** Substrings one of which a raw line must contain for the rule to apply; undefined if none can be named. */
function necessaryNeedles(rule: CompiledRule): readonly string[] | undefined {
  // The condition's needles are usually rarer ("secrets") than the paths' keys ("requestObject").
  if (rule.when?.needles !== undefined) return rule.when.needles;
  return rule.needles.every((n) => n !== undefined) ? (rule.needles as string[]) : undefined;
}

function mayApply(rule: CompiledRule, raw: string): boolean {
  if (rule.when !== undefined && !rule.when.mayMatchRaw(raw)) return false;
  return rule.needles.some((n) => n === undefined || raw.includes(n));
}

function masker(r: RedactRuleConfig, hashKey: Secret | undefined): (v: unknown) => string {
  if (r.mask_with === 'text') return () => r.mask_text;
  return (v) => {
    const text = typeof v === 'string' ? v : JSON.stringify(v) ?? 'null';
    // The key is read per value so a rotated key file takes effect at once.
    const key = hashKey?.get();
    const digest = key ? createHmac('sha256', key).update(text).digest('hex') : createHash('sha256').update(text).digest('hex');
    return `${key ? 'hmac-sha256' : 'sha256'}:${digest.slice(0, r.hash_chars)}`;
  };
}

interface Target {
  parent: Container;
  key: string | number;
}

function collectTargets(doc: unknown, paths: readonly FieldPath[]): Target[] {
  const targets: Target[] = [];
  // `**` patterns can reach one location twice; each field counts once.
  const seen = new Map<Container, Set<string | number>>();
  for (const path of paths) {
    visitPath(doc, path, (parent, key) => {
      let keys = seen.get(parent);
      if (keys === undefined) seen.set(parent, (keys = new Set()));
      if (keys.has(key)) return;
      keys.add(key);
      targets.push({ parent, key });
    });
  }
  return targets;
}

function apply(rule: CompiledRule, targets: Target[]): void {
  if (!rule.remove) {
    for (const t of targets) (t.parent as Record<string | number, unknown>)[t.key] = rule.maskValue((t.parent as Record<string | number, unknown>)[t.key]);
    return;
  }
  const fromArrays = new Map<unknown[], number[]>();
  for (const t of targets) {
    if (Array.isArray(t.parent)) {
      let idx = fromArrays.get(t.parent);
      if (idx === undefined) fromArrays.set(t.parent, (idx = []));
      idx.push(t.key as number);
    } else {
      delete t.parent[t.key as string];
    }
  }
  // Highest index first, so earlier removals do not shift later ones.
  for (const [arr, idx] of fromArrays) for (const i of idx.sort((a, b) => b - a)) arr.splice(i, 1);
}

export const redactProcessor: ProcessorPlugin<typeof schema> = {
  kind: 'processor',
  type: 'redact',
  description: 'Remove or mask fields by path; removes Secret and TokenReview bodies and last-applied-configuration by default.',
  schema,
  metrics: redactMetrics,
  logEvents: redactLogEvents,
  create: (cfg, ctx) => new RedactProcessor(cfg, ctx),
};
