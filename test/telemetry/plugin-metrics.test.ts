import { describe, expect, it } from 'vitest';
import { allMetrics } from '../../src/config/reference.ts';
import { auditFileEvent, auditFileMetrics } from '../../src/inputs/audit-file/telemetry.ts';
import { allPlugins } from '../../src/registry.ts';
import { createMetrics, pluginMetrics } from '../../src/telemetry/metrics.ts';

describe('plugin metrics', () => {
  it('are declared once per Metrics object, on first use, and shared by every instance of the plugin', async () => {
    const metrics = createMetrics();
    expect((await metrics.registry.metrics()).includes('ktrail_audit_file_')).toBe(false);
    const a = auditFileMetrics(metrics);
    expect(auditFileMetrics(metrics)).toBe(a);
    a.lines.inc({ input: 'x' }, 3);
    expect(await metrics.registry.metrics()).toMatch(/ktrail_audit_file_lines_total\{input="x"\} 3/);
    // Another process-wide set (a test's second agent) gets its own series.
    const other = createMetrics();
    expect(auditFileMetrics(other)).not.toBe(a);
    expect((await other.registry.getSingleMetric('ktrail_audit_file_lines_total')!.get()).values).toEqual([]);
  });

  it('a second copy of a declaration under the same key finds the series already made', () => {
    const metrics = createMetrics();
    const first = auditFileMetrics(metrics);
    const copy = pluginMetrics('audit_file', () => {
      throw new Error('declared twice');
    });
    expect(copy(metrics)).toBe(first);
  });

  it('every plugin that declares series names them in its definition, and the docs list them all', () => {
    const names = allMetrics()
      .registry.getMetricsAsArray()
      .map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    for (const p of allPlugins()) {
      if (!p.metrics) continue;
      const own = createMetrics();
      p.metrics(own);
      const added = own.registry.getMetricsAsArray().length - createMetrics().registry.getMetricsAsArray().length;
      expect(added, p.type).toBeGreaterThan(0);
    }
    expect(names).toEqual(expect.arrayContaining(['ktrail_audit_file_gap_files_total', 'ktrail_k8s_events_leader', 'ktrail_redact_fields_total', 'ktrail_output_duplicates_total']));
  });
});

describe('plugin log events', () => {
  it('are named <plugin>.<event>, and every plugin names only its own', () => {
    for (const p of allPlugins()) {
      if (!p.logEvents) continue;
      expect(p.logEvents.plugin).toBe(p.type);
      for (const [name, spec] of Object.entries(p.logEvents.events)) {
        expect(name).toMatch(/^[a-z][a-z0-9_]*$/);
        expect(['info', 'warn', 'error']).toContain(spec.level);
        expect(spec.help.length).toBeGreaterThan(20);
      }
    }
    expect(auditFileEvent.gap).toBe('audit_file.gap');
  });
});
