import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type AuditStage,
  SeededRandom,
  auditLine,
  auditLines,
  auditStream,
  formatMicroTime,
  goJsonStringify,
  makeAuditEvent,
  resourcePath,
} from './audit-events.ts';

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function stagesById(events: AuditEvent[]): Map<string, AuditEvent[]> {
  const byId = new Map<string, AuditEvent[]>();
  for (const e of events) {
    const list = byId.get(e.auditID) ?? [];
    list.push(e);
    byId.set(e.auditID, list);
  }
  return byId;
}

describe('makeAuditEvent', () => {
  const base = {
    auditID: '5d1c4d0a-6f39-4c3e-9d0b-0d6a3f1e2b7c',
    verb: 'create',
    level: 'RequestResponse' as const,
    objectRef: { resource: 'secrets', namespace: 'payments', name: 'db', apiVersion: 'v1' },
    requestObject: { kind: 'Secret', apiVersion: 'v1', data: { password: 'ZmFrZQ==' } },
    responseObject: { kind: 'Secret', apiVersion: 'v1', metadata: { uid: 'u-1' } },
    requestReceivedTimestamp: new Date('2024-05-01T10:00:00.123Z'),
  };

  it('produces the apiserver field order and MicroTime timestamps', () => {
    const e = makeAuditEvent(base);
    expect(Object.keys(e)).toEqual([
      'kind',
      'apiVersion',
      'level',
      'auditID',
      'stage',
      'requestURI',
      'verb',
      'user',
      'sourceIPs',
      'userAgent',
      'objectRef',
      'responseStatus',
      'requestObject',
      'responseObject',
      'requestReceivedTimestamp',
      'stageTimestamp',
      'annotations',
    ]);
    expect(e).toMatchObject({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', stage: 'ResponseComplete', requestURI: '/api/v1/namespaces/payments/secrets/db' });
    expect(e.responseStatus).toEqual({ metadata: {}, code: 201 });
    expect(e.requestReceivedTimestamp).toBe('2024-05-01T10:00:00.123000Z');
    expect(e.stageTimestamp).toBe('2024-05-01T10:00:00.125000Z');
    expect(e.annotations).toEqual({ 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' });
  });

  it('applies stage rules: RequestReceived has no status, annotations or bodies; ResponseStarted no bodies', () => {
    const rr = makeAuditEvent({ ...base, stage: 'RequestReceived' });
    expect(rr.responseStatus).toBeUndefined();
    expect(rr.annotations).toBeUndefined();
    expect(rr.requestObject).toBeUndefined();
    expect(rr.responseObject).toBeUndefined();
    expect(rr.stageTimestamp).toBe(rr.requestReceivedTimestamp);
    const rs = makeAuditEvent({ ...base, stage: 'ResponseStarted' });
    expect(rs.responseStatus?.code).toBe(201);
    expect(rs.annotations).toBeDefined();
    expect(rs.requestObject).toBeUndefined();
    const panic = makeAuditEvent({ ...base, stage: 'Panic' });
    expect(panic.responseStatus).toMatchObject({ status: 'Failure', reason: 'InternalError', code: 500 });
  });

  it('applies level rules: Metadata drops both bodies, Request keeps only requestObject', () => {
    const metadata = makeAuditEvent({ ...base, level: 'Metadata' });
    expect(metadata.requestObject).toBeUndefined();
    expect(metadata.responseObject).toBeUndefined();
    const request = makeAuditEvent({ ...base, level: 'Request' });
    expect(request.requestObject).toEqual(base.requestObject);
    expect(request.responseObject).toBeUndefined();
    const nonResource = makeAuditEvent({ ...base, objectRef: undefined, requestURI: '/version' });
    expect(nonResource.requestObject).toBeUndefined();
    expect(nonResource.objectRef).toBeUndefined();
  });

  it('sorts map keys (user.extra, annotations) like Go and escapes &, <, > like Go', () => {
    const line = auditLine({
      ...base,
      requestURI: '/api/v1/pods?limit=500&resourceVersion=0',
      user: { username: 'system:serviceaccount:a:b', extra: { 'z/k': ['1'], 'a/k': ['<2>'] } },
      annotations: { 'z.example/x': '1', 'authorization.k8s.io/decision': 'allow' },
    });
    expect(line).toContain('"requestURI":"/api/v1/pods?limit=500\\u0026resourceVersion=0"');
    expect(line).toContain('"extra":{"a/k":["\\u003c2\\u003e"],"z/k":["1"]}');
    expect(line).toContain('"annotations":{"authorization.k8s.io/decision":"allow","z.example/x":"1"}');
    const parsed = JSON.parse(line) as AuditEvent;
    expect(parsed.requestURI).toBe('/api/v1/pods?limit=500&resourceVersion=0');
    expect(goJsonStringify({ s: 'a\u2028b' })).toBe('{"s":"a\\u2028b"}');
  });

  it('builds resource paths for core, grouped, cluster-scoped and subresource refs', () => {
    expect(resourcePath({ resource: 'nodes', name: 'n1', apiVersion: 'v1', subresource: 'status' })).toBe('/api/v1/nodes/n1/status');
    expect(resourcePath({ resource: 'leases', namespace: 'kube-node-lease', name: 'n1', apiGroup: 'coordination.k8s.io', apiVersion: 'v1' })).toBe(
      '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1',
    );
  });

  it('formats MicroTime with six digits', () => {
    expect(formatMicroTime(Date.UTC(2024, 4, 1, 10) * 1000 + 123456)).toBe('2024-05-01T10:00:00.123456Z');
    expect(formatMicroTime(Date.UTC(2024, 4, 1, 10) * 1000 + 7)).toBe('2024-05-01T10:00:00.000007Z');
  });

  it('SeededRandom makes valid v4 UUIDs, reproducibly', () => {
    const a = new SeededRandom(9);
    const b = new SeededRandom(9);
    for (let i = 0; i < 50; i++) {
      const u = a.uuid();
      expect(u).toMatch(UUID);
      expect(b.uuid()).toBe(u);
    }
  });
});

describe('auditStream', () => {
  const events = Array.from(auditStream({ seed: 42, count: 3000 }));

  it('yields exactly count events, in stageTimestamp order', () => {
    expect(events).toHaveLength(3000);
    for (let i = 1; i < events.length; i++) {
      expect((events[i] as AuditEvent).stageTimestamp >= (events[i - 1] as AuditEvent).stageTimestamp).toBe(true);
    }
    for (const e of events) {
      expect(e.auditID).toMatch(UUID);
      expect(e.stageTimestamp).toMatch(MICRO_TIME);
      expect(e.requestReceivedTimestamp).toMatch(MICRO_TIME);
    }
  });

  it('gives every auditID its stages in order, exactly as the apiserver emits them', () => {
    const byId = stagesById(events);
    const shapes = new Set<string>();
    for (const [, stages] of byId) {
      const names = stages.map((s) => s.stage);
      const longRunning = stages[0]?.verb === 'watch' || stages[0]?.objectRef?.subresource === 'exec';
      const expected: AuditStage[] = longRunning ? ['RequestReceived', 'ResponseStarted', 'ResponseComplete'] : ['RequestReceived', 'ResponseComplete'];
      if (names.at(-1) === 'Panic') expected[expected.length - 1] = 'Panic';
      expect(names).toEqual(expected);
      shapes.add(names.join('>'));
      const first = stages[0] as AuditEvent;
      for (const s of stages) {
        expect(s.requestReceivedTimestamp).toBe(first.requestReceivedTimestamp);
        expect(s.requestURI).toBe(first.requestURI);
        expect(s.stageTimestamp >= first.stageTimestamp).toBe(true);
      }
      expect(first.stageTimestamp).toBe(first.requestReceivedTimestamp);
    }
    expect(shapes).toContain('RequestReceived>ResponseComplete');
    expect(shapes).toContain('RequestReceived>ResponseStarted>ResponseComplete');
  });

  it('mixes the traffic of a real cluster', () => {
    const has = (pred: (e: AuditEvent) => boolean): boolean => events.some(pred);
    expect(has((e) => e.user.username.startsWith('system:node:') && e.verb === 'watch')).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'leases' && e.objectRef.namespace === 'kube-node-lease' && e.verb === 'update')).toBe(true);
    expect(has((e) => e.user.username.startsWith('system:serviceaccount:kube-system:') && e.userAgent?.startsWith('kube-controller-manager/') === true)).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'deployments' && e.verb === 'create' && e.level === 'RequestResponse')).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'deployments' && e.verb === 'patch')).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'deployments' && e.verb === 'delete')).toBe(true);
    expect(has((e) => e.objectRef?.subresource === 'exec' && e.responseStatus?.code === 101)).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'tokenreviews')).toBe(true);
    expect(has((e) => e.objectRef?.resource === 'events' && e.verb === 'create')).toBe(true);
    expect(has((e) => e.responseStatus?.code === 403 && e.annotations?.['authorization.k8s.io/decision'] === 'forbid')).toBe(true);
  });

  it('gives pod-bound service-account tokens their pod and credential extras', () => {
    const podSa = events.filter((e) => e.user.extra?.['authentication.kubernetes.io/pod-name'] !== undefined);
    expect(podSa.length).toBeGreaterThan(0);
    for (const e of podSa) {
      expect(e.user.username).toMatch(/^system:serviceaccount:[^:]+:[^:]+$/);
      expect(e.user.extra?.['authentication.kubernetes.io/pod-uid']?.[0]).toMatch(UUID);
      expect(e.user.extra?.['authentication.kubernetes.io/credential-id']?.[0]).toMatch(/^JTI=/);
      expect(e.user.groups).toContain('system:serviceaccounts');
    }
  });

  it('RequestResponse secrets carry base64 data and configmap applies carry last-applied-configuration', () => {
    const secrets = events.filter((e) => e.objectRef?.resource === 'secrets' && e.level === 'RequestResponse' && e.stage === 'ResponseComplete' && e.responseStatus?.code !== 403);
    expect(secrets.some((e) => e.verb === 'get')).toBe(true);
    expect(secrets.some((e) => e.verb === 'create')).toBe(true);
    for (const e of secrets) {
      const data = (e.responseObject as { data: Record<string, string> }).data;
      for (const v of Object.values(data)) expect(Buffer.from(v, 'base64').toString('base64')).toBe(v);
      expect(Buffer.from(data.password as string, 'base64').toString()).toMatch(/^fake-password-/);
    }
    const applies = events.filter((e) => e.objectRef?.resource === 'configmaps' && e.stage === 'ResponseComplete' && e.requestObject !== undefined);
    expect(applies.length).toBeGreaterThan(0);
    for (const e of applies) {
      const annotations = (e.requestObject as { metadata: { annotations: Record<string, string> } }).metadata.annotations;
      const applied = JSON.parse(annotations['kubectl.kubernetes.io/last-applied-configuration'] as string) as { kind: string };
      expect(applied.kind).toBe('ConfigMap');
    }
  });

  it('is deterministic for a seed and different for another', () => {
    const again = Array.from(auditStream({ seed: 42, count: 3000 }));
    expect(again.map((e) => goJsonStringify(e))).toEqual(events.map((e) => goJsonStringify(e)));
    const other = Array.from(auditStream({ seed: 43, count: 50 }));
    expect(other.map((e) => e.auditID)).not.toEqual(events.slice(0, 50).map((e) => e.auditID));
  });

  it('rejects a count no sequence of requests can fill', () => {
    expect(() => Array.from(auditStream({ count: 1 }))).toThrow(RangeError);
    expect(Array.from(auditStream({ count: 0 }))).toEqual([]);
    expect(Array.from(auditStream({ count: 2 }))).toHaveLength(2);
    expect(Array.from(auditStream({ count: 3 }))).toHaveLength(3);
  });
});

describe('auditLines', () => {
  it('every line is one valid JSON event; RequestResponse lines carry their objects', () => {
    let requestResponse = 0;
    for (const line of auditLines({ seed: 5, count: 1500 })) {
      expect(line.includes('\n')).toBe(false);
      const e = JSON.parse(line) as AuditEvent;
      expect(e.kind).toBe('Event');
      if (e.level === 'RequestResponse' && e.stage === 'ResponseComplete' && e.responseStatus?.code !== undefined && e.responseStatus.code < 300) {
        requestResponse++;
        expect(e.responseObject).toBeDefined();
      }
    }
    expect(requestResponse).toBeGreaterThan(0);
  });

  it('streams about approxBytes lazily, and big pod lists reach ~1 MB unless capped', () => {
    const lines = auditLines({ seed: 8, approxBytes: 3_000_000, mix: { bigList: 2 } });
    expect(typeof lines.next).toBe('function');
    let bytes = 0;
    let largest = 0;
    for (const line of lines) {
      bytes += Buffer.byteLength(line) + 1;
      largest = Math.max(largest, line.length);
    }
    expect(bytes).toBeGreaterThanOrEqual(3_000_000);
    expect(bytes).toBeLessThan(3_000_000 + 4 * 1_200_000);
    expect(largest).toBeGreaterThan(900_000);
    let big: string | undefined;
    for (const line of auditLines({ seed: 8, count: 400, mix: { bigList: 1000 } })) {
      if (line.includes('"kind":"PodList"')) {
        big = line;
        break;
      }
    }
    const list = (JSON.parse(big as string) as AuditEvent).responseObject as { items: unknown[] };
    expect(list.items).toHaveLength(200);

    let cappedLargest = 0;
    for (const line of auditLines({ seed: 8, count: 400, mix: { bigList: 5 }, maxLineBytes: 100_000 })) {
      cappedLargest = Math.max(cappedLargest, Buffer.byteLength(line));
    }
    expect(cappedLargest).toBeLessThanOrEqual(100_000);
  });
});
