import { errorMessage, KtrailError } from '../errors.ts';
import type { CheckContext, Plugin, ProbeResult } from '../plugin.ts';

/**
 * `ktrail check -c FILE [--connect] [--json]`.
 *
 * 1. The config is validated (every problem at once): invalid → exit 2.
 * 2. What the schema cannot see is looked at on this machine, without
 *    connecting: paths that match nothing, output and state paths that cannot
 *    be written, kubeconfig keys ktrail ignores and files it names that do not
 *    exist. These are warnings (stderr, exit code stays 0): the machine that
 *    checks is not always the one that runs.
 * 3. With `--connect`, every output and every component that talks to the
 *    Kubernetes API is tried like a health check, one line each; exit 1 when
 *    any of them fails.
 */

const PROBE_TIMEOUT_MS = 10_000;

export interface CheckOptions {
  json: boolean;
  connect: boolean;
}

interface Component {
  where: string;
  plugin: Plugin;
  config: Record<string, unknown>;
}

export async function check(file: string, opts: CheckOptions): Promise<number> {
  const { ConfigError, loadConfigFile } = await import('../config/load.ts');
  const { serviceWarnings } = await import('../config/writable.ts');
  const { maskValue, rememberConfigSecrets, scrubText } = await import('../telemetry/scrub.ts');
  const { createLogger } = await import('../telemetry/logger.ts');
  let cfg;
  try {
    cfg = loadConfigFile(file);
  } catch (err) {
    process.stderr.write(`${scrubText(errorMessage(err))}\n`);
    return err instanceof ConfigError || (err instanceof KtrailError && err.code.startsWith('KTRAIL_ERR_CONFIG')) ? 2 : 1;
  }
  rememberConfigSecrets(cfg);
  const components: Component[] = [
    ...cfg.inputs.map((c) => ({ where: `inputs.${c.name}`, plugin: c.plugin as Plugin, config: c.config })),
    ...cfg.processors.map((c) => ({ where: `processors.${c.name}`, plugin: c.plugin as Plugin, config: c.config })),
    ...cfg.outputs.map((c) => ({ where: `outputs.${c.name}`, plugin: c.plugin as Plugin, config: c.config })),
  ];
  const ctx: CheckContext = { nodeName: cfg.service.node_name, stateDir: cfg.service.state_dir };
  const warnings = serviceWarnings(cfg.service);
  const notes: string[] = [];
  for (const c of components) {
    if (!c.plugin.inspect) continue;
    try {
      const found = await c.plugin.inspect(c.config as never, ctx);
      warnings.push(...found.warnings.map((w) => `${c.where}: ${w}`));
      notes.push(...found.notes.map((n) => `${c.where}: ${n}`));
    } catch (err) {
      warnings.push(`${c.where}: could not be checked: ${errorMessage(err)}`);
    }
  }

  const resolved = {
    service: cfg.service,
    spool: cfg.spool,
    inputs: Object.fromEntries(cfg.inputs.map((c) => [c.name, c.config])),
    processors: Object.fromEntries(cfg.processors.map((c) => [c.name, c.config])),
    outputs: Object.fromEntries(cfg.outputs.map((c) => [c.name, c.config])),
  };
  const masked = maskValue(resolved);
  for (const w of warnings) process.stderr.write(scrubText(`warning: ${w}\n`));
  if (opts.json) {
    // stdout stays one JSON document (the resolved config); what the check found goes beside the warnings.
    for (const n of notes) process.stderr.write(scrubText(`note: ${n}\n`));
    process.stdout.write(`${JSON.stringify(masked, null, 2)}\n`);
  } else {
    const counts = `${cfg.inputs.length} inputs, ${cfg.processors.length} processors, ${cfg.outputs.length} outputs`;
    const w = warnings.length > 0 ? `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'} (on stderr)` : '';
    process.stdout.write(`${file}: valid (${counts})${w}\n`);
    for (const n of notes) process.stdout.write(scrubText(`${n}\n`));
    process.stdout.write(`${JSON.stringify(masked, null, 2)}\n`);
  }
  if (!opts.connect) return 0;

  const log = createLogger('silent');
  let failed = 0;
  const out = opts.json ? process.stderr : process.stdout;
  out.write('connect:\n');
  for (const c of components) {
    if (!c.plugin.probe) continue;
    let results: ProbeResult[];
    try {
      results = await c.plugin.probe(c.config as never, { ...ctx, log, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    } catch (err) {
      results = [{ target: c.plugin.type, ok: false, detail: `probe failed: ${errorMessage(err)}` }];
    }
    for (const r of results) {
      if (!r.ok) failed++;
      out.write(scrubText(`  ${c.where} (${c.plugin.type}): ${r.ok ? 'ok' : 'FAILED'} ${r.target} — ${r.detail}\n`));
    }
  }
  if (failed > 0) out.write(`${failed} connection check${failed === 1 ? '' : 's'} failed\n`);
  return failed > 0 ? 1 : 0;
}
