import type { AgentConfig } from '../config/load.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Runs every input plugin's `prepare` (audit_file: open every matching file),
 * the first thing `ktrail run` does after validating the config: before the
 * spool, the outputs and the telemetry server, and before their code loads.
 * The results go to the Agent as `prepared`.
 */
export async function prepareInputs(config: AgentConfig, log: Logger): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const ic of config.inputs) {
    if (!ic.plugin.prepare) continue;
    out.set(ic.name, await ic.plugin.prepare(ic.config, log.child({ component_kind: 'input', component_id: ic.name, component_type: ic.plugin.type })));
  }
  return out;
}
