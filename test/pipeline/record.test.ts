import { describe, expect, it } from 'vitest';
import { LogRecord } from '../../src/pipeline/record.ts';

const rec = (raw: string) => new LogRecord({ id: 'a:1', timeMs: 0, input: 'audit', raw });

// Spacing, key order, a float written as 1.0 and \u escapes: JSON.stringify would change all of them.
const RAW = '{ "kind":"Event",  "level" : "Metadata", "ratio": 1.0, "msg":"caf\\u00e9 \\u003c", "objectRef":{"kubernetes":"nested"} }';

describe('LogRecord.encode', () => {
  it('ships an untouched raw document byte for byte', () => {
    const r = rec(RAW);
    expect(r.doc.kind).toBe('Event');
    expect(r.isRaw).toBe(true);
    expect(r.encode()).toBe(RAW);
  });

  it('splices added keys before the closing brace, leaving the original bytes as they were', () => {
    const r = rec('{"kind":"Event","ratio":1.0}');
    r.add('cluster', 'prod');
    r.add('pod', { name: 'p', labels: { app: 'x' } });
    r.add('skipped', undefined);
    expect(r.encode()).toBe('{"kind":"Event","ratio":1.0,"cluster":"prod","pod":{"name":"p","labels":{"app":"x"}}}');
    expect(r.added('cluster')).toBe('prod');
  });

  it('splices into an empty object and ignores whitespace around the closing brace', () => {
    const empty = rec('{}');
    empty.add('a', 1);
    expect(empty.encode()).toBe('{"a":1}');
    const spaced = rec('{ }');
    spaced.add('a', 1);
    expect(spaced.encode()).toBe('{"a":1}');
    const trailing = rec('{"x":1}  \n');
    trailing.add('a', true);
    expect(trailing.encode()).toBe('{"x":1,"a":true}');
    const inner = rec('{"x":1 \n }');
    inner.add('a', null);
    expect(inner.encode()).toBe('{"x":1,"a":null}');
  });

  it('mutate drops the raw text and ships the changed document', () => {
    const r = rec(RAW);
    r.mutate((doc) => {
      doc.msg = '[redacted]';
    });
    expect(r.isRaw).toBe(false);
    expect(r.raw).toBeUndefined();
    expect(r.encode()).toBe('{"kind":"Event","level":"Metadata","ratio":1,"msg":"[redacted]","objectRef":{"kubernetes":"nested"}}');
    r.add('cluster', 'prod');
    expect(r.encode()).toBe('{"kind":"Event","level":"Metadata","ratio":1,"msg":"[redacted]","objectRef":{"kubernetes":"nested"},"cluster":"prod"}');
  });

  it('a record built from a parsed doc (or nothing) encodes it', () => {
    expect(new LogRecord({ id: 'x', timeMs: 0, input: 'ev', doc: { a: [1, 2] } }).encode()).toBe('{"a":[1,2]}');
    const blank = new LogRecord({ id: 'x', timeMs: 0, input: 'ev' });
    blank.add('k', 'v');
    expect(blank.encode()).toBe('{"k":"v"}');
  });

  it('never writes a key twice: an added key the document already has replaces its value', () => {
    const r = rec('{"kind":"Event","kubernetes":1,"verb":"get"}');
    r.add('kubernetes', { pod: 'p' });
    r.add('cluster', 'prod');
    const out = r.encode();
    expect(out).toBe('{"kind":"Event","kubernetes":{"pod":"p"},"verb":"get","cluster":"prod"}');
    expect(out.match(/"kubernetes"/g)).toHaveLength(1);
    // The original document is not changed by encoding.
    expect(r.doc.kubernetes).toBe(1);
    expect(r.isRaw).toBe(true);
  });

  it('a key name seen only in a nested object or a value still adds the top-level key once', () => {
    const r = rec(RAW);
    r.add('kubernetes', { pod: 'p' });
    expect(JSON.parse(r.encode())).toEqual({
      kind: 'Event',
      level: 'Metadata',
      ratio: 1,
      msg: 'café <',
      objectRef: { kubernetes: 'nested' },
      kubernetes: { pod: 'p' },
    });
    expect(r.encode().match(/"kubernetes"/g)).toHaveLength(2);
  });

  it('after mutate, an added key the document has also replaces it instead of repeating it', () => {
    const r = new LogRecord({ id: 'x', timeMs: 0, input: 'ev', doc: { kubernetes: 'old', a: 1 } });
    r.mutate((doc) => {
      doc.a = 2;
    });
    r.add('kubernetes', 'new');
    expect(r.encode()).toBe('{"kubernetes":"new","a":2}');
  });
});
