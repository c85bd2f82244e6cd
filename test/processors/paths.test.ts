import { describe, expect, it } from 'vitest';
import { parsePath, pathNeedle, pathValues, PathSyntaxError, textNeedle, visitPath } from '../../src/processors/paths.ts';

describe('parsePath', () => {
  it('parses dotted keys, quoted keys, indexes and wildcards', () => {
    expect(parsePath('objectRef.resource').segments).toEqual([
      { kind: 'key', key: 'objectRef' },
      { kind: 'key', key: 'resource' },
    ]);
    expect(parsePath('user.extra["authentication.kubernetes.io/pod-name"]').segments).toEqual([
      { kind: 'key', key: 'user' },
      { kind: 'key', key: 'extra' },
      { kind: 'key', key: 'authentication.kubernetes.io/pod-name' },
    ]);
    expect(parsePath("a['it\\'s'].b").segments[1]).toEqual({ kind: 'key', key: "it's" });
    expect(parsePath('items[].metadata').segments).toEqual([{ kind: 'key', key: 'items' }, { kind: 'any' }, { kind: 'key', key: 'metadata' }]);
    expect(parsePath('items[*]').segments[1]).toEqual({ kind: 'any' });
    expect(parsePath('items[2]').segments[1]).toEqual({ kind: 'index', index: 2 });
    expect(parsePath('**.metadata.annotations.*').segments).toEqual([
      { kind: 'deep' },
      { kind: 'key', key: 'metadata' },
      { kind: 'key', key: 'annotations' },
      { kind: 'any' },
    ]);
    expect(parsePath('["*"]').segments).toEqual([{ kind: 'key', key: '*' }]);
  });

  it.each([
    ['', 'empty'],
    ['a..b', 'empty key'],
    ['.a', 'empty key'],
    ['a.', 'ends with a dot'],
    ['a["b"', 'expected "]"'],
    ['a["b', 'unterminated'],
    ['a[x]', 'inside []'],
    [']a', 'unexpected'],
    ['a]', 'expected "." or "["'],
    ['a["b"]c', 'expected "." or "["'],
    ['a.**', 'cannot be the last'],
    ['a b', 'spaces'],
  ])('rejects %j (%s)', (text, problem) => {
    expect(() => parsePath(text)).toThrow(PathSyntaxError);
    expect(() => parsePath(text)).toThrow(problem);
  });
});

describe('pathValues / visitPath', () => {
  const doc = {
    verb: 'list',
    user: { username: 'u', groups: ['g1', 'g2'], extra: { 'authentication.kubernetes.io/pod-name': ['web-0'] } },
    responseObject: {
      kind: 'PodList',
      items: [
        { metadata: { name: 'a', annotations: { x: '1', y: '2' } } },
        { metadata: { name: 'b' } },
      ],
    },
    nil: null,
  };

  it('resolves plain, quoted, array and wildcard paths', () => {
    expect(pathValues(doc, parsePath('verb'))).toEqual(['list']);
    expect(pathValues(doc, parsePath('user.extra["authentication.kubernetes.io/pod-name"]'))).toEqual([['web-0']]);
    expect(pathValues(doc, parsePath('user.groups[1]'))).toEqual(['g2']);
    expect(pathValues(doc, parsePath('responseObject.items[].metadata.name')).sort()).toEqual(['a', 'b']);
    expect(pathValues(doc, parsePath('responseObject.items[0].metadata.annotations.*')).sort()).toEqual(['1', '2']);
    expect(pathValues(doc, parsePath('nil'))).toEqual([null]);
    expect(pathValues(doc, parsePath('missing.deeper'))).toEqual([]);
    // No implicit stepping into arrays.
    expect(pathValues(doc, parsePath('responseObject.items.metadata'))).toEqual([]);
    // A key segment never matches an array index.
    expect(pathValues(doc, parsePath('user.groups.0'))).toEqual([]);
  });

  it('** matches at any depth including the root', () => {
    const names = pathValues(doc, parsePath('**.metadata.name')).sort();
    expect(names).toEqual(['a', 'b']);
    expect(pathValues({ metadata: { name: 'root' }, x: [{ metadata: { name: 'deep' } }] }, parsePath('**.metadata.name')).sort()).toEqual(['deep', 'root']);
  });

  it('walks very deep documents without overflowing the stack', () => {
    let deep: Record<string, unknown> = { metadata: { annotations: { k: 'v' } } };
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    const found: unknown[] = [];
    visitPath(deep, parsePath('**.metadata.annotations.k'), (parent, key) => found.push((parent as Record<string, unknown>)[key]));
    expect(found).toEqual(['v']);
  });
});

describe('needles', () => {
  it('quotes safe text and falls back to the longest safe run', () => {
    expect(textNeedle('secrets', 'quoted')).toBe('"secrets"');
    expect(textNeedle('system:node:', 'prefix')).toBe('"system:node:');
    expect(textNeedle('kubectl.kubernetes.io/last-applied-configuration', 'quoted')).toBe('last-applied-configuration');
    expect(textNeedle('a/b', 'quoted')).toBeUndefined();
    expect(textNeedle('<&>', 'quoted')).toBeUndefined();
  });

  it('uses the longest literal key of a path', () => {
    expect(pathNeedle(parsePath('requestObject'))).toBe('"requestObject"');
    expect(pathNeedle(parsePath('**.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]'))).toBe('last-applied-configuration');
    expect(pathNeedle(parsePath('*.*'))).toBeUndefined();
  });
});
