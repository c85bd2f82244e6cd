// npm run bench: end-to-end and micro benchmarks. Each case prints MiB/s,
// events/s, CPU ms per MiB and peak RSS beside a reference measured in the
// same run. KTRAIL_BENCH_SCALE=0.1 shrinks every case; KTRAIL_BENCH=name runs one;
// KTRAIL_BENCH_RUNS=3 reports medians (audit-file); KTRAIL_BENCH_CPU_PROF=DIR writes CPU profiles.
import { benchSpool } from './spool.ts';
import { benchAuditFile } from './audit-file.ts';
import { benchOutputs } from './outputs.ts';
import { benchProcessors } from './processors.ts';
import { benchK8sEvents } from './k8s-events.ts';
import { benchStartup } from './startup.ts';
import { benchLive, benchPipeline } from './pipeline.ts';
import { benchWebhook } from './webhook.ts';

const cases: Array<[string, () => Promise<void>]> = [
  ['e2e', benchPipeline],
  ['live', benchLive],
  ['spool', benchSpool],
  ['audit-file', async () => void (await benchAuditFile())],
  ['outputs', benchOutputs],
  ['processors', benchProcessors],
  ['k8s-events', benchK8sEvents],
  ['startup', benchStartup],
  ['webhook', benchWebhook],
];

const only = process.env.KTRAIL_BENCH;
process.stdout.write(`ktrail benchmarks — node ${process.version}, scale ${process.env.KTRAIL_BENCH_SCALE ?? '1'}\n`);
for (const [name, run] of cases) {
  if (only && only !== name) continue;
  await run();
}
