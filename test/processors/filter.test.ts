import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfigText, ConfigError } from '../../src/config/load.ts';
import { filterProcessor, type FilterConfig } from '../../src/processors/filter/filter.ts';
import { auditLine, auditLines } from '../generators/audit-gen.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { counterValue, processorContext, rawRecord } from './support.ts';

const DISCARDED = 'ktrail_component_discarded_events_total';

function makeFilter(config: unknown) {
  const cfg = filterProcessor.schema.parse(config) as FilterConfig;
  const ctx = processorContext('noise', 'filter');
  return { ctx, filter: filterProcessor.create(cfg, ctx) };
}

const noiseRules = {
  rules: [
    {
      name: 'node-reads',
      action: 'drop',
      when: { all: [{ field: 'verb', in: ['get', 'list', 'watch'] }, { field: 'user.username', prefix: 'system:node:' }] },
    },
    { name: 'leases-events', action: 'drop', when: { field: 'objectRef.resource', in: ['leases', 'events'] } },
  ],
};

afterEach(() => vi.restoreAllMocks());

describe('filter on a realistic audit stream', () => {
  it('drops kubelet reads and leases/events, counting each rule by name', async () => {
    const lines = [...auditLines({ seed: 3, count: 2000 })];
    const { ctx, filter } = makeFilter(noiseRules);
    const records = lines.map((l) => rawRecord(l));
    const kept = await filter.process(records);

    // The expectation, computed independently on the parsed events.
    let nodeReads = 0;
    let leasesEvents = 0;
    const expectKept: string[] = [];
    for (const l of lines) {
      const e = JSON.parse(l);
      if (['get', 'list', 'watch'].includes(e.verb) && String(e.user.username).startsWith('system:node:')) nodeReads++;
      else if (['leases', 'events'].includes(e.objectRef?.resource)) leasesEvents++;
      else expectKept.push(l);
    }
    expect(nodeReads).toBeGreaterThan(100);
    expect(leasesEvents).toBeGreaterThan(100);
    expect(kept.map((r) => r.encode())).toEqual(expectKept);
    expect(await counterValue(ctx.metrics, DISCARDED, { component_id: 'noise', reason: 'rule:node-reads' })).toBe(nodeReads);
    expect(await counterValue(ctx.metrics, DISCARDED, { component_id: 'noise', reason: 'rule:leases-events' })).toBe(leasesEvents);
    // Kept lines are shipped byte for byte.
    for (const r of kept) expect(r.isRaw).toBe(true);
  });

  it('does not parse lines no rule can match', async () => {
    const { filter } = makeFilter({ rules: [{ name: 'leases', when: { field: 'objectRef.resource', equals: 'leases' } }] });
    const pod = auditLine({ verb: 'get', objectRef: { resource: 'pods', namespace: 'default', name: 'web-0', apiVersion: 'v1' } });
    const lease = auditLine({ verb: 'update', objectRef: { resource: 'leases', namespace: 'kube-node-lease', name: 'node-1', apiGroup: 'coordination.k8s.io', apiVersion: 'v1' } });
    const parse = vi.spyOn(JSON, 'parse');
    const kept = await filter.process([rawRecord(pod), rawRecord(lease), rawRecord(pod)]);
    expect(kept.map((r) => r.encode())).toEqual([pod, pod]);
    expect(parse).toHaveBeenCalledTimes(1);
  });
});

describe('filter rules', () => {
  const ev = (opts: Parameters<typeof auditLine>[0]) => rawRecord(auditLine(opts));
  const podUser = {
    username: 'system:serviceaccount:monitoring:prometheus',
    groups: ['system:serviceaccounts', 'system:serviceaccounts:monitoring', 'system:authenticated'],
    extra: { 'authentication.kubernetes.io/pod-name': ['prometheus-0'], 'authentication.kubernetes.io/pod-uid': ['0b0e7c36-1111-4e0a-9f00-000000000001'] },
  };

  it('first matching rule decides: keep before drop', async () => {
    const { ctx, filter } = makeFilter({
      rules: [
        { name: 'keep-secrets', action: 'keep', when: { field: 'objectRef.resource', equals: 'secrets' } },
        { name: 'drop-gets', action: 'drop', when: { field: 'verb', equals: 'get' } },
      ],
    });
    const secretGet = ev({ verb: 'get', objectRef: { resource: 'secrets', namespace: 'a', name: 's', apiVersion: 'v1' } });
    const podGet = ev({ verb: 'get', objectRef: { resource: 'pods', namespace: 'a', name: 'p', apiVersion: 'v1' } });
    const kept = await filter.process([secretGet, podGet]);
    expect(kept).toEqual([secretGet]);
    expect(await counterValue(ctx.metrics, DISCARDED, { reason: 'rule:drop-gets' })).toBe(1);
    expect(await counterValue(ctx.metrics, DISCARDED, { reason: 'rule:keep-secrets' })).toBe(0);
  });

  it('default_action: drop keeps only what a keep rule selects', async () => {
    const { ctx, filter } = makeFilter({
      default_action: 'drop',
      rules: [{ name: 'writes', action: 'keep', when: { not: { field: 'verb', in: ['get', 'list', 'watch'] } } }],
    });
    const recs = [ev({ verb: 'get' }), ev({ verb: 'create' }), ev({ verb: 'watch' }), ev({ verb: 'delete' })];
    const kept = await filter.process(recs);
    expect(kept.map((r) => (r.doc as { verb: string }).verb)).toEqual(['create', 'delete']);
    expect(await counterValue(ctx.metrics, DISCARDED, { reason: 'default_action' })).toBe(2);
  });

  it('escaped keys with dots, exists, regex, numbers and arrays', async () => {
    const { ctx, filter } = makeFilter({
      rules: [
        { name: 'from-pods', when: { field: 'user.extra["authentication.kubernetes.io/pod-name"]', exists: true } },
        { name: 'not-found', when: { field: 'responseStatus.code', equals: 404 } },
        { name: 'masters', when: { field: 'user.groups', equals: 'system:masters' } },
        { name: 'healthz', when: { field: 'requestURI', regex: '^/(healthz|livez|readyz)(\\?|$)' } },
      ],
    });
    const fromPod = ev({ user: podUser, verb: 'list', objectRef: { resource: 'pods', apiVersion: 'v1' } });
    const missing = ev({ verb: 'get', code: 404, objectRef: { resource: 'configmaps', namespace: 'x', name: 'gone', apiVersion: 'v1' } });
    const master = ev({ user: { username: 'admin', groups: ['system:masters', 'system:authenticated'] }, verb: 'create', objectRef: { resource: 'namespaces', name: 'n', apiVersion: 'v1' } });
    const health = ev({ verb: 'get', requestURI: '/readyz?verbose' });
    const other = ev({ verb: 'get', requestURI: '/version' });
    const kept = await filter.process([fromPod, missing, master, health, other]);
    expect(kept).toEqual([other]);
    for (const rule of ['from-pods', 'not-found', 'masters', 'healthz']) {
      expect(await counterValue(ctx.metrics, DISCARDED, { reason: `rule:${rule}` })).toBe(1);
    }
  });

  it('any / not / exists: false', async () => {
    const { filter } = makeFilter({
      rules: [
        {
          name: 'anonymous-or-nonresource',
          when: { any: [{ field: 'user.username', equals: 'system:anonymous' }, { field: 'objectRef', exists: false }] },
        },
      ],
    });
    const anon = ev({ user: { username: 'system:anonymous' }, verb: 'get', objectRef: { resource: 'pods', apiVersion: 'v1' } });
    const nonResource = ev({ verb: 'get', requestURI: '/metrics' });
    const normal = ev({ verb: 'get', objectRef: { resource: 'pods', apiVersion: 'v1' } });
    expect(await filter.process([anon, nonResource, normal])).toEqual([normal]);
  });

  it('keeps and counts a record that is not valid JSON instead of throwing', async () => {
    const { ctx, filter } = makeFilter({ rules: [{ name: 'gets', when: { field: 'verb', equals: 'get' } }] });
    const broken = rawRecord('{"verb":"get", truncated');
    const kept = await filter.process([broken, ev({ verb: 'get' })]);
    expect(kept).toEqual([broken]);
    expect(await counterValue(ctx.metrics, 'ktrail_component_errors_total', { reason: 'unparsable' })).toBe(1);
  });

  it('works on records built from a parsed document (k8s_events input)', async () => {
    const { filter } = makeFilter({ rules: [{ name: 'normal', when: { field: 'type', equals: 'Normal' } }] });
    const { LogRecord } = await import('../../src/pipeline/record.ts');
    const normal = new LogRecord({ id: 'e1', timeMs: 1, input: 'events', doc: { type: 'Normal', reason: 'Pulled' } });
    const warning = new LogRecord({ id: 'e2', timeMs: 1, input: 'events', doc: { type: 'Warning', reason: 'BackOff' } });
    expect(await filter.process([normal, warning])).toEqual([warning]);
  });
});

describe('filter config validation', () => {
  const base = (processor: string) => `
service: { state_dir: /tmp/none, metrics: { enabled: false } }
inputs: { src: { type: fake } }
processors:
  noise:
    type: filter
${processor}
outputs: { out: { type: stdout } }
`;
  const load = (processor: string) => loadConfigText(base(processor), 'test.yaml', { extraPlugins: [fakeInputPlugin()] });
  const problems = (processor: string): string => {
    try {
      load(processor);
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    throw new Error('config was accepted');
  };

  it('accepts the documented example', () => {
    const cfg = load(`    rules:
      - name: node-reads
        action: drop
        when:
          all:
            - { field: verb, in: [get, list, watch] }
            - { field: user.username, prefix: "system:node:" }
      - name: pod-tokens
        when: { field: 'user.extra["authentication.kubernetes.io/pod-name"]', exists: true }`);
    expect(cfg.processors[0]!.plugin.type).toBe('filter');
  });

  it.each([
    [`    rules: [ { name: a, when: { field: verb, regex: "(" } } ]`, 'invalid regular expression'],
    [`    rules: [ { name: a, when: { field: "a..b", equals: x } } ]`, 'empty key'],
    [`    rules: [ { name: a, when: { field: verb, equals: x, prefix: y } } ]`, 'exactly one of'],
    [`    rules: [ { name: a, when: { field: verb } } ]`, 'exactly one of'],
    [`    rules: [ { name: a, when: { all: [ { field: verb, equals: x } ], any: [ { field: verb, equals: y } ] } } ]`, 'either one combinator'],
    [`    rules: [ { name: a, when: { equals: x } } ]`, 'has no "field"'],
    [`    rules: [ { name: a, when: { field: verb, equal: x } } ]`, 'equal'],
    [`    rules: [ { name: a, when: { field: verb, equals: x } }, { name: a, when: { field: verb, equals: y } } ]`, 'used twice'],
    [`    rules: [ { name: "bad name", when: { field: verb, equals: x } } ]`, 'rules[0].name'],
    [`    rules: []`, 'rules'],
  ])('rejects %s', (yaml, message) => {
    expect(problems(yaml)).toContain(message);
  });

  it('reports the path of a nested problem', () => {
    expect(problems(`    rules: [ { name: a, when: { all: [ { field: verb, equals: x }, { field: verb, regex: "[" } ] } } ]`)).toContain(
      'processors.noise.rules[0].when.all[1].regex',
    );
  });
});
