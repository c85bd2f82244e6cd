import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEsBulkServer, type EsBulkServer } from '../helpers/es-bulk-server.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { auditLines } from '../generators/audit-gen.ts';
import { HttpSink, tempDir, until } from './support/harness.ts';

/**
 * Crash mid-delivery: the agent runs as a real process shipping to
 * Elasticsearch, S3 and HTTP at once and is SIGKILLed while requests are in
 * flight whose data the sinks stored but whose answers never arrived. After a
 * restart on the same state directory every record reaches every sink, and
 * the replays collapse at the sink: ES by `_id` (409), S3 by key (overwrite),
 * HTTP by Idempotency-Key. Run twice: with the test input through a small
 * runner, and as `ktrail run` with the audit_file input on a generated log.
 */
const RUNNER = path.join(import.meta.dirname, 'support', 'run-agent.ts');
const KTRAIL = path.join(import.meta.dirname, '..', '..', 'bin', 'ktrail.js');
const TOTAL = 3000;
const BUCKET = 'crash';

let s3: S3TestServer;
beforeAll(async () => {
  s3 = await startS3Server({ buckets: [BUCKET] });
});
afterAll(async () => {
  await s3?.stop();
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startAgent(argv: string[]): Child {
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return { proc, output: () => out, exited };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

interface Scenario {
  /** Argv after `node`. */
  argv: (config: string) => string[];
  /** Input section of the config. */
  inputs: (dir: string) => string;
  /** The identity of a document line, and every identity that must arrive. */
  idOf: (doc: Record<string, unknown>) => string;
  expected: string[];
}

async function crashAndRestart(sc: Scenario): Promise<void> {
  const es: EsBulkServer = await startEsBulkServer();
  cleanups.push(() => es.close());
  const web = await new HttpSink().listen();
  cleanups.push(() => web.close());
  web.reply = () => ({ status: 200, delayMs: 5 });
  es.delayMs = 5;
  const total = sc.expected.length;
  const idsOfLines = (lines: string[]) => lines.filter(Boolean).map((l) => sc.idOf(JSON.parse(l) as Record<string, unknown>));
  const s3Ids = async () => {
    const keys = await s3.listKeys(BUCKET, prefix);
    const ids: string[] = [];
    for (const k of keys) ids.push(...idsOfLines((await s3.getObjectGunzipped(BUCKET, k)).split('\n')));
    return { keys, ids };
  };

  const dir = tempDir(cleanups);
  const prefix = `${path.basename(dir)}/`;
  const config = path.join(dir, 'ktrail.yaml');
  const retry = 'retry: { initial_backoff: 20ms, max_backoff: 200ms }';
  fs.writeFileSync(
    config,
    `
service: { state_dir: ${dir}/state, node_name: node-a, log_level: error, shutdown_timeout: 10s, metrics: { listen: "127.0.0.1:0" } }
inputs:
${sc.inputs(dir).replace(/^/gm, '  ')}
outputs:
  es: { type: elasticsearch, url: "${es.url}", index: audit, batch: { max_records: 100, flush_interval: 20ms }, ${retry} }
  web: { type: http, url: "${web.url}/in", batch: { max_records: 100, flush_interval: 20ms }, ${retry} }
  lake:
    type: s3
    bucket: ${BUCKET}
    endpoint: ${s3.proxyEndpoint}
    force_path_style: true
    access_key_id: ${s3.accessKeyId}
    secret_access_key: ${s3.secretAccessKey}
    key_format: "${prefix}{node}-{batch}.ndjson.gz"
    max_object_bytes: 64KiB
    max_object_age: 100ms
    ${retry}
`,
  );

  const first = startAgent(sc.argv(config));
  await until(async () => es.docCount('audit') >= 100 && web.accepted.size >= 2 && (await s3.listKeys(BUCKET, prefix)).length >= 1, 30_000, 'first deliveries');

  // From now on every sink stores what it gets but the answer never arrives.
  const esResets = es.resetNext(1_000_000, { afterProcessing: true });
  const s3Resets = s3.proxy.resetNext(1_000_000, { operation: 'PutObject', afterForwarding: true });
  const hungKeys = new Set<string>();
  web.reply = (req) => {
    hungKeys.add(String(req.headers['idempotency-key']));
    return { status: 200, delayMs: 60_000 };
  };
  await until(() => esResets.hits >= 2 && s3Resets.hits >= 2 && hungKeys.size >= 1, 30_000, `requests stored without an answer\n${first.output()}`);

  first.proc.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');
  const esDocsAtCrash = es.docCount('audit');
  const objectsAtCrash = (await s3.listKeys(BUCKET, prefix)).length;
  expect(esDocsAtCrash).toBeLessThan(total);

  es.clearFaults();
  s3.proxy.clearFaults();
  const afterRestart: string[] = [];
  web.reply = (req) => {
    afterRestart.push(String(req.headers['idempotency-key']));
    return { status: 200 };
  };
  const second = startAgent(sc.argv(config));
  await until(
    async () => es.docCount('audit') === total && new Set(idsOfLines(web.acceptedLines())).size === total && new Set((await s3Ids()).ids).size === total,
    45_000,
    `all ${total} records at every sink after the restart\n${second.output()}`,
  );
  second.proc.kill('SIGTERM');
  const exit = await second.exited;
  expect(exit.code, second.output()).toBe(0);

  const expected = [...sc.expected].sort();
  // Elasticsearch: one document per record; the replayed items answered 409.
  expect(es.allDocs().map((d) => sc.idOf(d.source)).sort()).toEqual(expected);
  const conflicts = es.bulkRequests.flatMap((r) => {
    const items = (r.response as { items?: Array<Record<string, { status: number }>> } | undefined)?.items ?? [];
    return items.filter((i) => Object.values(i)[0]?.status === 409);
  });
  expect(conflicts.length).toBeGreaterThan(0);

  // HTTP: the hung request was resent with the same key and collapsed there: each record under exactly one key.
  const hung = [...hungKeys][0]!;
  expect(afterRestart).toContain(hung);
  expect(idsOfLines(web.acceptedLines()).sort()).toEqual(expected);

  // S3: objects stored before the crash were rewritten under their own keys, not duplicated.
  const { keys, ids } = await s3Ids();
  expect(ids.sort()).toEqual(expected);
  expect(keys.length).toBeGreaterThanOrEqual(objectsAtCrash);
  const puts = s3.proxy.requests.filter((r) => r.operation === 'PutObject' && r.key?.startsWith(prefix));
  expect(puts.length).toBeGreaterThan(keys.length);
}

describe('restart after SIGKILL mid-delivery', () => {
  it('agent process with the test input: every record reaches every sink exactly once at the sink', async () => {
    await crashAndRestart({
      argv: (config) => [RUNNER, config],
      inputs: () => `gen: { type: fake, total: ${TOTAL}, batch: 25, delay_ms: 25 }`,
      idOf: (doc) => String(doc.seq),
      expected: range(TOTAL).map(String),
    });
  });

  it('`ktrail run` with audit_file on a generated log: every audit event reaches every sink exactly once at the sink', async () => {
    const lines = [...auditLines({ seed: 11, count: TOTAL })];
    await crashAndRestart({
      argv: (config) => [KTRAIL, 'run', '-c', config],
      inputs: (dir) => {
        fs.mkdirSync(path.join(dir, 'logs'));
        fs.writeFileSync(path.join(dir, 'logs', 'audit.log'), `${lines.join('\n')}\n`);
        return `audit: { type: audit_file, paths: ["${dir}/logs/audit.log"] }`;
      },
      idOf: (doc) => `${String(doc.auditID)}:${String(doc.stage)}`,
      expected: [...new Set(lines.map((l) => {
        const d = JSON.parse(l) as { auditID: string; stage: string };
        return `${d.auditID}:${d.stage}`;
      }))],
    });
  });
});
