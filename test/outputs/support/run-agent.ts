/**
 * `node test/outputs/support/run-agent.ts CONFIG` — the agent as a real process,
 * like `ktrail run -c CONFIG`, with the test input registered. Crash tests
 * SIGKILL it mid-delivery and start it again on the same state directory.
 * SIGTERM stops it gracefully (exit 0).
 */
import { loadConfigFile } from '../../../src/config/load.ts';
import { Agent } from '../../../src/pipeline/agent.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createMetrics } from '../../../src/telemetry/metrics.ts';
import { fakeInputPlugin } from '../../support/fake-input.ts';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: run-agent.ts CONFIG\n');
  process.exit(2);
}
const cfg = loadConfigFile(file, { extraPlugins: [fakeInputPlugin()] });
const agent = new Agent(cfg, { log: createLogger(cfg.service.log_level), metrics: createMetrics() });
process.on('SIGTERM', () => {
  agent.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
await agent.start();
process.stdout.write('started\n');
