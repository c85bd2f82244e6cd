import { z } from 'zod';
import { errorMessage } from '../../errors.ts';
import type { LogRecord } from '../../pipeline/record.ts';
import type { ComponentContext, Processor, ProcessorPlugin } from '../../plugin.ts';
import { anyNeedle } from '../paths.ts';
import { compileCondition, conditionSchema, type CompiledCondition } from './condition.ts';
import { filterEvent, filterLogEvents } from './telemetry.ts';

/**
 * Keeps or drops records by field conditions. Rules are tried in order and
 * the first whose condition holds decides (`drop` or `keep`); a record no
 * rule matches gets `default_action`. Every dropped record is counted in
 * `ktrail_component_discarded_events_total{reason="rule:<name>"}` (or
 * `reason="default_action"`), so nothing leaves the pipeline unexplained.
 *
 * A raw line is parsed only when some rule may match it (see condition.ts);
 * records kept without parsing stay byte for byte as read.
 */

export const ruleNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, 'use letters, digits, "_", ".", ":" and "-" (at most 64 characters)');

const ruleSchema = z.strictObject({
  name: ruleNameSchema,
  action: z.enum(['drop', 'keep']).default('drop'),
  when: conditionSchema,
});

const schema = z.strictObject({
  rules: z
    .array(ruleSchema)
    .min(1)
    .superRefine((rules, ctx) => {
      const seen = new Set<string>();
      rules.forEach((r, i) => {
        if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `rule name "${r.name}" is used twice; names label the metrics, so each must be unique` });
        seen.add(r.name);
      });
    })
    .describe('Rules tried in order: { name, action: drop|keep (default drop), when: <condition> }; the first whose condition holds decides.'),
  default_action: z.enum(['keep', 'drop']).default('keep').describe('What happens to a record no rule matches.'),
});
export type FilterConfig = z.output<typeof schema>;

interface CompiledRule {
  name: string;
  reason: string;
  drop: boolean;
  when: CompiledCondition;
}

export class FilterProcessor implements Processor {
  readonly #rules: CompiledRule[];
  readonly #dropByDefault: boolean;
  /** Matches a raw line only if some rule may match it; undefined when some rule has no needles. */
  readonly #prefilter: RegExp | undefined;
  readonly #ctx: ComponentContext;
  #unparsableLogged = false;

  constructor(cfg: FilterConfig, ctx: ComponentContext) {
    this.#ctx = ctx;
    this.#rules = cfg.rules.map((r) => ({ name: r.name, reason: `rule:${r.name}`, drop: r.action === 'drop', when: compileCondition(r.when) }));
    this.#dropByDefault = cfg.default_action === 'drop';
    const constrained = this.#rules.every((r) => r.when.needles !== undefined);
    this.#prefilter = constrained ? anyNeedle(this.#rules.flatMap((r) => r.when.needles!)) : undefined;
  }

  process(records: LogRecord[]): LogRecord[] {
    const kept: LogRecord[] = [];
    const dropped = new Map<string, number>();
    for (const record of records) {
      const decision = this.#decide(record);
      if (decision === undefined) kept.push(record);
      else dropped.set(decision, (dropped.get(decision) ?? 0) + 1);
    }
    for (const [reason, n] of dropped) this.#ctx.telemetry.discarded(reason, n);
    return kept;
  }

  /** The discard reason, or undefined to keep the record. */
  #decide(record: LogRecord): string | undefined {
    const raw = record.raw;
    if (raw !== undefined && this.#prefilter !== undefined && !this.#prefilter.test(raw)) return this.#dropByDefault ? 'default_action' : undefined;
    for (const rule of this.#rules) {
      if (raw !== undefined && !rule.when.mayMatchRaw(raw)) continue;
      let holds: boolean;
      try {
        holds = rule.when.test(record.doc);
      } catch (err) {
        // Unparsable text cannot be judged: keep it (the outputs or the
        // dead-letter table will show it) rather than drop it unseen.
        this.#ctx.telemetry.error('unparsable');
        if (!this.#unparsableLogged) {
          this.#unparsableLogged = true;
          this.#ctx.log.warn({ event: filterEvent.unparsable, recordId: record.id, err: errorMessage(err) }, 'filter: record is not valid JSON; kept unfiltered (logged once)');
        }
        return undefined;
      }
      if (holds) return rule.drop ? rule.reason : undefined;
    }
    return this.#dropByDefault ? 'default_action' : undefined;
  }
}

export const filterProcessor: ProcessorPlugin<typeof schema> = {
  kind: 'processor',
  type: 'filter',
  description: 'Keep or drop records by field conditions (first matching rule decides).',
  schema,
  logEvents: filterLogEvents,
  create: (cfg, ctx) => new FilterProcessor(cfg, ctx),
};
