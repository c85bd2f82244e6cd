import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { auditId, InProcessAgent, line, removeTmpDirs, tmpDir, waitFor } from '../inputs/audit-file/harness.ts';
import { collectOutput, type Collected } from './collect-output/plugin.ts';

/**
 * Adding an output takes one folder: this one (collect-output/) uses only the
 * plugin contract, and the delivery layer gives it batching, retry with
 * backoff, dead letters and metrics without a line of its own.
 */
const running: InProcessAgent[] = [];
afterEach(async () => {
  for (const a of running.splice(0)) await a.stop().catch(() => undefined);
  removeTmpDirs();
});

describe('an output from one folder, on the public contract only', () => {
  it('gets batching, retry, dead letters and metrics from the delivery layer', async () => {
    const root = tmpDir();
    const auditDir = path.join(root, 'audit');
    fs.mkdirSync(auditDir, { recursive: true });
    fs.writeFileSync(path.join(auditDir, 'audit.log'), Array.from({ length: 25 }, (_, i) => `${line(i)}\n`).join(''));
    const ids = Array.from({ length: 25 }, (_, i) => `${auditId(i)}:ResponseComplete`);
    const rejected = ids[7]!;
    const collected: Collected = { requests: [], delivered: [] };
    const yaml = [
      'service:',
      `  state_dir: ${JSON.stringify(path.join(root, 'state'))}`,
      '  metrics: { enabled: false }',
      'inputs:',
      `  audit: { type: audit_file, paths: [${JSON.stringify(path.join(auditDir, 'audit*.log*'))}], rescan_interval: 200ms }`,
      'outputs:',
      `  collect: { type: test_collect, fail_first: 2, reject: [${JSON.stringify(rejected)}], batch: { max_records: 10, flush_interval: 50ms }, retry: { initial_backoff: 10ms, max_backoff: 20ms } }`,
    ].join('\n');
    const agent = await InProcessAgent.start(yaml, { logFile: path.join(root, 'agent.log'), extraPlugins: [collectOutput(collected)] });
    running.push(agent);
    await waitFor(() => collected.delivered.length >= 24, 10_000, 'every record but the refused one delivered');

    // Batching: no request holds more than batch.max_records.
    expect(Math.max(...collected.requests.map((r) => r.ids.length))).toBeLessThanOrEqual(10);
    // Retry: the first request was sent again under the same key, attempt 2 and 3.
    const first = collected.requests[0]!;
    expect(collected.requests.filter((r) => r.key === first.key).map((r) => r.attempt).slice(0, 3)).toEqual([1, 2, 3]);
    expect(collected.delivered.toSorted()).toEqual(ids.filter((id) => id !== rejected).toSorted());
    // Dead letters: the refused record, with its reason.
    const dead = agent.agent.spool.db.prepare('SELECT record_id, output, reason FROM dead_letters').all();
    expect(dead).toEqual([{ record_id: rejected, output: 'collect', reason: 'rejected: scripted refusal' }]);
    // Metrics, under the output's name.
    const retries = await agent.metrics.outputRetries.get();
    expect(retries.values.filter((v) => v.labels.output === 'collect').reduce((n, v) => n + v.value, 0)).toBe(2);
    const requests = await agent.metrics.outputRequests.get();
    expect(requests.values.find((v) => v.labels.output === 'collect' && v.labels.outcome === 'retryable')?.value).toBe(2);
  });
});
