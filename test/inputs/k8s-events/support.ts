import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfigText } from '../../../src/config/load.ts';
import { Agent } from '../../../src/pipeline/agent.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../../src/telemetry/metrics.ts';
import { KubeApiServer, type CoreEvent, type KubeApiServerOptions } from '../../helpers/kube-api-server.ts';
import { z } from 'zod';
import type { SpooledRecord } from '../../../src/pipeline/record.ts';
import type { OutboundRequest, OutputPlugin, SendOutcome } from '../../../src/plugin.ts';
import { Gate } from '../../support/gated-output.ts';

/** Shared set-up for the k8s_events tests: the API emulation, kubeconfigs, in-process agents. */

export function tempDir(prefix = 'ktrail-events-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export { writeKubeconfig, type KubeconfigOptions } from '../../helpers/kubeconfig.ts';

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition', pollMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

/** Like test/support's gated output, but it keeps whole records (id, time, JSON), not only ids. */
export class RecordingGate extends Gate {
  readonly records: Array<Pick<SpooledRecord, 'id' | 'timeMs' | 'json'>> = [];
}

const recorderSchema = z.strictObject({});

function recorderPlugin(gate: RecordingGate): OutputPlugin<typeof recorderSchema> {
  return {
    kind: 'output',
    type: 'recorder',
    description: 'test output',
    schema: recorderSchema,
    delivery: { batch: { flush_interval: 0 } },
    create: () => ({
      async send(req: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
        while (gate.mode === 'closed' && !signal.aborted) await gate.wait(signal);
        if (signal.aborted) return { kind: 'retryable', code: 'aborted', detail: 'aborted' };
        if (gate.mode === 'failing') return { kind: 'retryable', code: 'http_503', detail: 'HTTP 503' };
        for (const r of req.records) {
          gate.delivered.push(r.id);
          gate.records.push({ id: r.id, timeMs: r.timeMs, json: r.json });
        }
        return { kind: 'ok' };
      },
    }),
  };
}

export interface InProcessAgent {
  agent: Agent;
  metrics: Metrics;
  gate: RecordingGate;
}

/**
 * Runs the agent in this process with a `gated` output recording delivered
 * ids. `inputYaml` is the k8s_events input's body (indented 4 spaces).
 */
export async function startAgent(stateDir: string, inputYaml: string, opts: { gate?: RecordingGate; spoolMaxBytes?: string; manifest?: boolean } = {}): Promise<InProcessAgent> {
  const gate = opts.gate ?? new RecordingGate();
  const text = [
    'service:',
    `  state_dir: ${stateDir}`,
    '  metrics: { enabled: false }',
    '  shutdown_timeout: 2s',
    ...(opts.spoolMaxBytes ? ['spool:', `  max_bytes: ${opts.spoolMaxBytes}`] : []),
    ...(opts.manifest ? ['manifest: { enabled: true }'] : []),
    'inputs:',
    '  events:',
    '    type: k8s_events',
    inputYaml,
    'outputs:',
    '  sink:',
    '    type: recorder',
    '',
  ].join('\n');
  const cfg = loadConfigText(text, 'test.yaml', { extraPlugins: [recorderPlugin(gate)] });
  const metrics = createMetrics();
  const agent = new Agent(cfg, { log: createLogger(process.env.KTRAIL_TEST_LOG ? 'debug' : 'silent'), metrics });
  await agent.start();
  return { agent, metrics, gate };
}

export async function startKube(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  return KubeApiServer.start({ bookmarkIntervalMs: 200, ...opts });
}

let podSeq = 0;

/** An event about a made-up pod. */
export function addEvent(kube: KubeApiServer, namespace = 'default', extra: { type?: 'Normal' | 'Warning'; reason?: string } = {}): CoreEvent {
  const name = `pod-${podSeq++}`;
  return kube.addEvent({
    namespace,
    reason: extra.reason ?? 'Scheduled',
    message: `Successfully assigned ${namespace}/${name}`,
    type: extra.type ?? 'Normal',
    involvedObject: { kind: 'Pod', namespace, name, uid: `uid-${name}`, apiVersion: 'v1' },
  });
}

export function idOf(e: CoreEvent): string {
  return `${e.metadata.uid}:${e.metadata.resourceVersion}`;
}

/** Ids occurring more than once. */
export function duplicates(ids: readonly string[]): string[] {
  const seen = new Set<string>();
  const dups: string[] = [];
  for (const id of ids) {
    if (seen.has(id)) dups.push(id);
    seen.add(id);
  }
  return dups;
}

export { KubeApiServer };

/** Writes event versions at a steady rate: alternately a new event and a count bump of a recent one. */
export class EventFlow {
  /** Every version written (`uid:resourceVersion`), in order. */
  readonly written: string[] = [];
  readonly #kube: KubeApiServer;
  readonly #names: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #tick = 0;

  constructor(kube: KubeApiServer) {
    this.#kube = kube;
  }

  start(intervalMs = 10): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.step(), intervalMs);
  }

  step(): void {
    const kube = this.#kube;
    if (this.#tick++ % 2 === 0 || this.#names.length === 0) {
      const e = addEvent(kube);
      this.#names.push(e.metadata.name);
      this.written.push(idOf(e));
    } else {
      const recent = this.#names.slice(-20);
      const name = recent[Math.floor(Math.random() * recent.length)]!;
      if (kube.get('events', 'default', name) === undefined) return;
      this.written.push(idOf(kube.bumpEvent('default', name)));
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
