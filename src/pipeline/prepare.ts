import fs from 'node:fs';
import type { AgentConfig } from '../config/load.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Runs every input plugin's `prepare` (audit_file: open every matching file),
 * the first thing `ktrail run` does after validating the config: before the
 * spool, the outputs and the telemetry server, and before their code loads.
 * The results go to the Agent as `prepared`.
 */
export async function prepareInputs(config: AgentConfig, log: Logger, early: ReadonlyMap<string, unknown> = new Map()): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const ic of config.inputs) {
    if (!ic.plugin.prepare) continue;
    const head = early.get(ic.name);
    out.set(ic.name, await ic.plugin.prepare(ic.config, log.child({ component_kind: 'input', component_id: ic.name, component_type: ic.plugin.type }), head));
  }
  return out;
}

/**
 * Runs the early preparers (registry.ts) of the inputs a config file names,
 * on its raw YAML, before the validator (zod, the schemas) loads: the audit
 * files are open some 50 ms sooner than validation would allow. Never fails:
 * a config it cannot read is the validator's to report, and what it opened
 * is used only if the validated config agrees.
 */
export async function runEarly(file: string): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  try {
    const [{ parse }, { earlyPreparer }, text] = await Promise.all([import('yaml'), import('../registry.ts'), fs.promises.readFile(file, 'utf8')]);
    const inputs = (parse(text) as { inputs?: Record<string, { type?: unknown }> } | null)?.inputs;
    if (!inputs || typeof inputs !== 'object') return out;
    for (const [name, raw] of Object.entries(inputs)) {
      const run = earlyPreparer(raw?.type);
      if (run) out.set(name, await run(raw).catch(() => undefined));
    }
  } catch {
    // Left to the validator.
  }
  return out;
}
