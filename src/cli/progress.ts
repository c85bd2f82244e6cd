import type { Agent } from '../pipeline/agent.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { fmtBytes } from './status.ts';

/**
 * One line on stderr, rewritten in place on a terminal: how many records were
 * read, spooled and delivered, and what is pending. For local runs.
 */
export function startProgress(metrics: Metrics, agent: Agent, intervalMs = 1000): { stop(): Promise<void> } {
  const tty = process.stderr.isTTY === true;
  let last = '';
  const tick = async () => {
    const sum = async (name: string, kind: string) => {
      const m = await metrics.registry.getSingleMetric(name)?.get();
      return (m?.values ?? []).filter((v) => v.labels.component_kind === kind).reduce((n, v) => n + v.value, 0);
    };
    const read = await sum('ktrail_component_received_events_total', 'input');
    const delivered = await sum('ktrail_component_sent_events_total', 'output');
    const dead = (await metrics.deadLetters.get()).values.reduce((n, v) => n + v.value, 0);
    const spool = agent.spool;
    const line = `ktrail: read ${read} · delivered ${delivered} · spool ${spool.records} records (${fmtBytes(spool.bytes)}) · dead-lettered ${dead}`;
    if (line === last) return;
    last = line;
    process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  };
  const timer = setInterval(() => void tick().catch(() => undefined), intervalMs);
  void tick().catch(() => undefined);
  return {
    async stop() {
      clearInterval(timer);
      await tick().catch(() => undefined);
      if (tty && last) process.stderr.write('\n');
    },
  };
}
