import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { extractRefs } from '../../src/processors/k8s-metadata/refs.ts';
import { auditLines } from '../generators/audit-gen.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.ts';
import { KubeApiServer } from '../helpers/kube-api-server.ts';
import { until, writeKubeconfig } from './kube-support.ts';
import { counterValue } from './support.ts';

/**
 * The three processors in the real agent: audit_file input → filter → redact
 * → k8s_metadata → spool → file output, against the API emulation.
 */

const TOKEN = 'pipeline-token';
let server: KubeApiServer;
let dir: string;
let lines: string[];
const agents: Agent[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
  lines = [...auditLines({ seed: 21, count: 3000, mix: { secret: 10, exec: 4, tokenreview: 8 } })];
  server = await KubeApiServer.start({ token: TOKEN, bookmarkIntervalMs: 200 });
  // The cluster the generated stream talks about: every pod it names exists. The
  // emulation picks its own uids, so the stream's pod uids are rewritten to match.
  const created = new Map<string, string>();
  const uids = new Map<string, string>();
  for (const l of lines) {
    const refs = extractRefs(JSON.parse(l));
    for (const ref of [refs.object, refs.actorPod]) {
      if (!ref) continue;
      const key = `${ref.namespace}/${ref.name}`;
      let uid = created.get(key);
      if (uid === undefined) {
        uid = server.addPod({ namespace: ref.namespace, name: ref.name, labels: { app: ref.name.replace(/-[^-]+$/, '') }, nodeName: 'node-1' }).metadata.uid;
        created.set(key, uid);
      }
      if (ref.uid) uids.set(ref.uid, uid);
    }
  }
  lines = lines.map((l) => {
    for (const [from, to] of uids) if (l.includes(from)) l = l.replaceAll(from, to);
    return l;
  });
});

afterAll(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  server.setDown(false);
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});

async function run(name: string): Promise<{ agent: Agent; metrics: Metrics; outFile: string }> {
  const base = path.join(dir, name);
  fs.mkdirSync(path.join(base, 'logs'), { recursive: true });
  fs.writeFileSync(path.join(base, 'logs', 'audit.log'), `${lines.join('\n')}\n`);
  const kubeconfig = writeKubeconfig(base, server.url, TOKEN);
  const outFile = path.join(base, 'out', 'audit.ndjson');
  const text = `
service:
  state_dir: ${path.join(base, 'state')}
  metrics: { enabled: false }
  shutdown_timeout: 2s
inputs:
  audit:
    type: audit_file
    paths: [${path.join(base, 'logs', 'audit.log')}]
processors:
  noise:
    type: filter
    rules:
      - name: node-reads
        when:
          all:
            - { field: verb, in: [get, list, watch] }
            - { field: user.username, prefix: "system:node:" }
      - name: leases
        when: { field: objectRef.resource, equals: leases }
  redact:
    type: redact
  meta:
    type: k8s_metadata
    kubeconfig: ${kubeconfig}
    cluster: emu
    lookup_timeout: 300ms
outputs:
  out:
    type: file
    path: ${outFile}
    batch: { flush_interval: 50ms }
`;
  const cfg = loadConfigText(text, `${name}.yaml`);
  const metrics = createMetrics();
  const agent = new Agent(cfg, { log: createLogger('silent'), metrics });
  agents.push(agent);
  await agent.start();
  return { agent, metrics, outFile };
}

function expectedKept(): string[] {
  return lines.filter((l) => {
    const e = JSON.parse(l);
    if (['get', 'list', 'watch'].includes(e.verb) && String(e.user.username).startsWith('system:node:')) return false;
    return e.objectRef?.resource !== 'leases';
  });
}

const readOut = (file: string): Array<Record<string, any>> => // oxlint-disable-line typescript/no-explicit-any
  fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)) : [];

describe('filter → redact → k8s_metadata in the agent', () => {
  it('drops the noise, redacts secrets, enriches pods; every other field intact', async () => {
    const { metrics, outFile } = await run('up');
    const kept = expectedKept();
    await until(() => readOut(outFile).length >= kept.length, 'all kept records delivered', 30_000);
    const out = readOut(outFile);
    expect(out).toHaveLength(kept.length);
    let enrichedObjects = 0;
    let secretBodies = 0;
    for (const [i, doc] of out.entries()) {
      const original = JSON.parse(kept[i]!);
      expect(doc.auditID).toBe(original.auditID);
      expect(doc.kubernetes?.cluster).toBe('emu');
      if (original.objectRef?.resource === 'secrets') {
        secretBodies += Number('requestObject' in original) + Number('responseObject' in original);
        expect(doc.requestObject).toBeUndefined();
        expect(doc.responseObject).toBeUndefined();
      }
      const refs = extractRefs(original);
      if (refs.object) {
        expect(doc.kubernetes.object).toMatchObject({ namespace: refs.object.namespace, name: refs.object.name, node: 'node-1' });
        enrichedObjects++;
      }
      if (refs.actorPod) expect(doc.kubernetes.actor.pod).toMatchObject({ name: refs.actorPod.name });
    }
    expect(secretBodies).toBeGreaterThan(0);
    expect(enrichedObjects).toBeGreaterThan(50);
    expect(await counterValue(metrics, 'ktrail_component_discarded_events_total', { component_id: 'noise' })).toBe(lines.length - kept.length);
    expect(await counterValue(metrics, 'ktrail_k8s_metadata_enrich_failures_total')).toBe(0);
  });

  it('with the API down, every record is still delivered, unenriched and counted', async () => {
    server.setDown(true);
    const { metrics, outFile } = await run('down');
    const kept = expectedKept();
    await until(() => readOut(outFile).length >= kept.length, 'all kept records delivered', 30_000);
    const out = readOut(outFile);
    expect(out).toHaveLength(kept.length);
    let podRecords = 0;
    for (const [i, doc] of out.entries()) {
      const refs = extractRefs(JSON.parse(kept[i]!));
      expect(doc.kubernetes?.object).toBeUndefined();
      expect(doc.kubernetes?.actor?.pod).toBeUndefined();
      if (refs.serviceAccount) expect(doc.kubernetes.actor.serviceAccount).toEqual(refs.serviceAccount);
      if (refs.object || refs.actorPod) podRecords++;
    }
    expect(podRecords).toBeGreaterThan(50);
    expect(await counterValue(metrics, 'ktrail_k8s_metadata_enrich_failures_total')).toBe(podRecords);
  });
});
