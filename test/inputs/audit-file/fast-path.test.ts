import { describe, expect, it } from 'vitest';
import { fastAuditLine, parseAuditJson, parseAuditLine } from '../../../src/inputs/audit-file/parse.ts';
import { LogRecord } from '../../../src/pipeline/record.ts';
import { auditLine, auditLines, SeededRandom } from '../../helpers/audit-events.ts';

/** What JSON.parse makes of a line: the reference the fast path must agree with. */
function reference(line: string): { id: string; timeMs: number } | undefined {
  const p = parseAuditJson(line, -1);
  return p.ok ? { id: p.id, timeMs: p.timeMs } : undefined;
}

/** The fast path never accepts a line JSON.parse rejects, and agrees with it when it accepts. */
function expectSafe(line: string): void {
  const fast = fastAuditLine(line);
  if (fast !== undefined) expect(fast).toEqual(reference(line));
  const p = parseAuditLine(line, -1);
  const ref = reference(line);
  expect(p.ok ? { id: p.id, timeMs: p.timeMs } : undefined).toEqual(ref);
}

const bigList = auditLine({
  level: 'RequestResponse',
  verb: 'list',
  objectRef: { resource: 'pods', namespace: 'web', apiVersion: 'v1' },
  responseObject: { kind: 'PodList', apiVersion: 'v1', items: [{ metadata: { name: 'a', annotations: { x: '{"stageTimestamp":"2020-01-01T00:00:00Z"}' } } }] },
  annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC: allowed by ClusterRoleBinding "x" <&>', 'z/ünicode': 'é\u2028\t"q"' },
});

describe('fastAuditLine on what kube-apiserver writes', () => {
  it('takes every line of the generator mix, with the id and time JSON.parse gives (many seeds)', () => {
    let lines = 0;
    for (let seed = 1; seed <= 40; seed++) {
      for (const line of auditLines({ seed, count: 400, mix: { bigList: 1, panic: 1, exec: 3 } })) {
        lines++;
        const fast = fastAuditLine(line);
        expect(fast, line.slice(0, 200)).toBeDefined();
        expect(fast).toEqual(reference(line));
      }
    }
    expect(lines).toBe(16_000);
  });

  it('handles escapes, non-ASCII and nested look-alike keys in bodies and annotations', () => {
    expect(fastAuditLine(bigList)).toEqual(reference(bigList));
    expect(bigList).toContain('\\u003c\\u0026\\u003e');
  });

  it('hands the record only the raw line; the document is parsed when first asked for', () => {
    const line = auditLine({ auditID: 'f00d', stage: 'RequestReceived', requestReceivedTimestamp: '2024-05-01T10:00:00.123456Z' });
    const p = parseAuditLine(line, 0);
    expect(p).toEqual({ ok: true, id: 'f00d:RequestReceived', timeMs: Date.UTC(2024, 4, 1, 10, 0, 0, 123) });
    const r = new LogRecord({ id: 'f00d:RequestReceived', timeMs: 0, input: 'a', raw: line });
    expect(r.encode()).toBe(line);
    expect(r.doc).toEqual(JSON.parse(line));
  });
});

describe('fastAuditLine leaves other lines to JSON.parse', () => {
  const base = JSON.parse(auditLine({ auditID: 'abc', requestReceivedTimestamp: '2024-05-01T10:00:00.000001Z' })) as Record<string, unknown>;
  const { requestReceivedTimestamp, stageTimestamp, annotations, ...front } = base;
  const timestamps = { requestReceivedTimestamp, stageTimestamp };
  const cases: Record<string, string> = {
    'escaped auditID': auditLine({ auditID: 'a<b' }),
    'escaped stage': JSON.stringify({ ...base, stage: 'Response\\Complete' }),
    'stage before auditID': JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', stage: 'ResponseComplete', auditID: 'abc', requestURI: '/', requestReceivedTimestamp: '2024-05-01T10:00:00Z', stageTimestamp: '2024-05-01T10:00:01Z' }),
    'an older apiVersion': JSON.stringify({ ...base, apiVersion: 'audit.k8s.io/v1beta1' }),
    'pretty-printed': JSON.stringify(base, null, 2),
    'leading space': ` ${JSON.stringify(base)}`,
    'trailing space': `${JSON.stringify(base)} `,
    'escaped key in the tail': JSON.stringify(base).replace('"stageTimestamp"', '"stage\\u0054imestamp"'),
    'unparsable stageTimestamp': JSON.stringify({ ...base, stageTimestamp: 'yesterday' }),
    'stageTimestamp not a string': JSON.stringify({ ...base, stageTimestamp: 5, annotations: undefined }),
    'empty auditID': JSON.stringify({ ...base, auditID: '' }),
    'nested audit event': JSON.stringify({ ...front, requestObject: JSON.parse(auditLine()) as unknown, ...timestamps }),
  };
  it('only the head and the tail need their order: annotations moved before the timestamps still read right', () => {
    const line = JSON.stringify({ ...front, annotations, ...timestamps });
    expect(fastAuditLine(line)).toEqual(reference(line));
    expect(fastAuditLine(line)).toBeDefined();
  });
  for (const [name, line] of Object.entries(cases)) {
    it(name, () => {
      expect(fastAuditLine(line)).toBeUndefined();
      expectSafe(line);
    });
  }

  it('annotations too rich for the tail pattern (backtracking limit) fall back', () => {
    const line = auditLine({ auditID: 'big', annotations: { huge: 'a&b'.repeat(1_000_000) } });
    expect(fastAuditLine(line)).toBeUndefined();
    expect(parseAuditLine(line, 0)).toMatchObject({ ok: true, id: 'big:ResponseComplete' });
  });
});

describe('fastAuditLine never takes a damaged line for an event', () => {
  const lines = [...auditLines({ seed: 7, count: 30 }), bigList];

  it('rejects every truncation of a line (a torn last line)', () => {
    for (const line of lines.slice(0, 6).concat(bigList)) {
      for (let n = 0; n < line.length; n++) {
        const torn = line.slice(0, n);
        expect(fastAuditLine(torn)).toBeUndefined();
        expect(parseAuditLine(torn, 0).ok).toBe(false);
      }
    }
  });

  it('rejects NUL-padded lines and NULs inside', () => {
    for (const line of lines) {
      for (const bad of [`\0\0\0\0${line}`, `${line.slice(0, 200)}\0${line.slice(200)}`, `${line.slice(0, -1)}\0}`]) {
        expect(fastAuditLine(bad)).toBeUndefined();
        expect(parseAuditLine(bad, 0).ok).toBe(false);
      }
    }
  });

  it('rejects a torn line glued to the next event', () => {
    const [a, b] = [lines[0]!, lines[1]!];
    for (let n = 1; n < a.length; n += 7) {
      const glued = a.slice(0, n) + b;
      expect(fastAuditLine(glued)).toBeUndefined();
      expect(parseAuditLine(glued, 0).ok).toBe(false);
    }
    expect(fastAuditLine(a + b)).toBeUndefined();
  });

  it('is never fooled by damage to the parts it checks (seeded random edits of head and tail)', () => {
    const rng = new SeededRandom(42);
    const alphabet = ['"', '\\', '{', '}', '[', ']', ',', ':', '\0', '\u0001', '\t', ' ', 'x', '0', 'é'];
    let checked = 0;
    for (const line of lines) {
      const head = line.indexOf('"requestURI":"') + 14;
      const tail = line.lastIndexOf(',"requestReceivedTimestamp":"');
      for (let k = 0; k < 300; k++) {
        // Deleted, replaced or inserted before: a character of the head (through the
        // requestURI's opening quote) or of the tail (from its comma; inserts after it).
        const op = rng.int(0, 2);
        const inTail = rng.chance(0.6);
        const at = inTail ? rng.int(op === 1 ? tail + 1 : tail, op === 1 ? line.length : line.length - 1) : rng.int(0, head - 1);
        const ch = rng.pick(alphabet);
        const bad = op === 0 ? line.slice(0, at) + line.slice(at + 1) : op === 1 ? line.slice(0, at) + ch + line.slice(at) : line.slice(0, at) + ch + line.slice(at + 1);
        expectSafe(bad);
        checked++;
      }
    }
    expect(checked).toBe(lines.length * 300);
  });
});
