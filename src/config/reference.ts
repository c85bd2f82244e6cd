import { z } from 'zod';
import { allPlugins } from '../registry.ts';
import type { OutputPlugin, Plugin } from '../plugin.ts';
import { createMetrics, type Metrics } from '../telemetry/metrics.ts';
import { deliveryDefaultsOf } from '../delivery/config.ts';
import { describeSchema, fmtDuration, fmtSize, type OptionRow } from './describe.ts';
import { outputCommonShape, processorCommonShape, serviceSchema, spoolSchema } from './schema.ts';
import { manifestSchema } from '../manifest/config.ts';

/**
 * The generated reference sections of docs/configuration.md and
 * docs/metrics.md: option tables from the zod schemas, the metric table from
 * the metrics module. Generated, so that they cannot drift from the code.
 */
export const BEGIN = '<!-- BEGIN GENERATED: npm run docs -->';
export const END = '<!-- END GENERATED -->';

export function replaceGenerated(doc: string, body: string): string {
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (start === -1 || end === -1 || end < start) throw new Error(`markers ${BEGIN} … ${END} not found`);
  return `${doc.slice(0, start + BEGIN.length)}\n${body.trim()}\n${doc.slice(end)}`;
}

function table(rows: OptionRow[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = ['| key | type | default | description |', '|---|---|---|---|'];
  for (const r of rows) {
    const dflt = r.default !== '' ? `\`${r.default}\`` : r.required ? '**required**' : '—';
    lines.push(`| \`${r.path}\` | ${r.type.includes('\\|') ? r.type : esc(r.type)} | ${esc(dflt)} | ${esc(r.description)} |`);
  }
  return lines.join('\n');
}

const docDir: Record<Plugin['kind'], string> = { input: 'inputs', processor: 'processors', output: 'outputs' };

export function renderOptionReference(): string {
  const out: string[] = [];
  out.push('### `service` and `spool`', '', table(describeSchema(z.object({ service: serviceSchema, spool: spoolSchema }))), '');
  out.push('### `manifest`', '', 'The completeness chain and `ktrail verify`: [verify.md](verify.md).', '', table(describeSchema(z.object({ manifest: manifestSchema }))), '');
  out.push('### Keys every processor has', '', table(describeSchema(z.object(processorCommonShape))), '');
  out.push('### Keys every output has', '', table(describeSchema(z.object(outputCommonShape))), '');
  for (const kind of ['input', 'processor', 'output'] as const) {
    for (const p of allPlugins().filter((x) => x.kind === kind)) {
      const doc = `${docDir[kind]}/${p.type}.md`;
      out.push(`### ${kind} \`${p.type}\``, '', `${p.description} Semantics and examples: [${doc}](${doc}).`, '');
      const rows = describeSchema(p.schema);
      out.push(rows.length > 0 ? table(rows) : 'No options of its own.', '');
      if (kind === 'output') {
        const d = deliveryDefaultsOf(p as OutputPlugin);
        out.push(
          `Defaults of the common keys for \`${p.type}\`: \`batch.max_bytes\` ${fmtSize(d.batch.max_bytes)}, ` +
            `\`batch.max_records\` ${d.batch.max_records}, \`batch.flush_interval\` ${fmtDuration(d.batch.flush_interval)}, ` +
            `\`request_timeout\` ${fmtDuration(d.request_timeout)}, \`concurrency\` ${d.concurrency}.`,
          '',
        );
      }
    }
  }
  return out.join('\n');
}

/** Every series ktrail can export: the core ones and every plugin's, on one registry. */
export function allMetrics(): Metrics {
  const metrics = createMetrics();
  for (const p of allPlugins()) p.metrics?.(metrics);
  return metrics;
}

export async function renderMetricsReference(): Promise<string> {
  const lines = ['| metric | type | labels | meaning |', '|---|---|---|---|'];
  for (const m of allMetrics().registry.getMetricsAsArray()) {
    const { name, help, type, labelNames = [] } = m as unknown as { name: string; help: string; type: string; labelNames?: string[] };
    const labels = labelNames.join(', ');
    lines.push(`| \`${name}\` | ${type} | ${labels ? `\`${labels}\`` : '—'} | ${help.replace(/\|/g, '\\|')} |`);
  }
  return lines.join('\n');
}

/** The named log lines of every plugin, for docs/logs.md. */
export function renderLogEventsReference(): string {
  const lines = ['| event | level | meaning |', '|---|---|---|'];
  for (const p of allPlugins()) {
    const c = p.logEvents;
    if (!c) continue;
    for (const [name, spec] of Object.entries(c.events)) lines.push(`| \`${c.plugin}.${name}\` | ${spec.level} | ${spec.help.replace(/\|/g, '\\|')} |`);
  }
  return lines.join('\n');
}
