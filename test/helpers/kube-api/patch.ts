// PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Strategic merge
// patch is applied as a merge patch, which is exact for maps (labels, annotations, spec
// scalars) and replaces lists wholesale instead of merging them by key.
import { badRequest, failureStatus, KubeApiError } from './status.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`invalid JSON pointer: ${pointer}`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: unknown, tokens: string[]): { parent: unknown; last: string } {
  let cur = doc;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(token)];
    else if (isPlainObject(cur)) cur = cur[token];
    else cur = undefined;
    if (cur === undefined) throw unprocessable(`path not found: /${tokens.join('/')}`);
  }
  return { parent: cur, last: tokens[tokens.length - 1] as string };
}

function unprocessable(message: string): KubeApiError {
  return new KubeApiError(failureStatus(422, 'Invalid', `the server rejected our request due to an error in our request: ${message}`));
}

function getAt(doc: unknown, tokens: string[]): unknown {
  if (tokens.length === 0) return doc;
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) return parent[Number(last)];
  if (isPlainObject(parent)) return parent[last];
  return undefined;
}

function removeAt(doc: unknown, tokens: string[]): unknown {
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    const index = Number(last);
    if (!Number.isInteger(index) || index < 0 || index >= parent.length) throw unprocessable(`index out of range: ${last}`);
    return parent.splice(index, 1)[0];
  }
  if (isPlainObject(parent) && Object.hasOwn(parent, last)) {
    const value = parent[last];
    delete parent[last];
    return value;
  }
  throw unprocessable(`path not found: /${tokens.join('/')}`);
}

function addAt(doc: unknown, tokens: string[], value: unknown, replace: boolean): unknown {
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    if (replace) {
      const index = Number(last);
      if (!Number.isInteger(index) || index < 0 || index >= parent.length) throw unprocessable(`index out of range: ${last}`);
      parent[index] = value;
    } else if (last === '-') {
      parent.push(value);
    } else {
      const index = Number(last);
      if (!Number.isInteger(index) || index < 0 || index > parent.length) throw unprocessable(`index out of range: ${last}`);
      parent.splice(index, 0, value);
    }
  } else if (isPlainObject(parent)) {
    if (replace && !Object.hasOwn(parent, last)) throw unprocessable(`path not found: /${tokens.join('/')}`);
    parent[last] = value;
  } else {
    throw unprocessable(`path not found: /${tokens.join('/')}`);
  }
  return doc;
}

export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('json patch must be an array of operations');
  let doc = structuredClone(target) as Json;
  for (const raw of ops as JsonPatchOp[]) {
    const tokens = parsePointer(String(raw.path));
    switch (raw.op) {
      case 'add':
        doc = addAt(doc, tokens, structuredClone(raw.value), false) as Json;
        break;
      case 'replace':
        doc = addAt(doc, tokens, structuredClone(raw.value), true) as Json;
        break;
      case 'remove':
        removeAt(doc, tokens);
        break;
      case 'move': {
        const value = removeAt(doc, parsePointer(String(raw.from)));
        doc = addAt(doc, tokens, value, false) as Json;
        break;
      }
      case 'copy': {
        const value = structuredClone(getAt(doc, parsePointer(String(raw.from))));
        doc = addAt(doc, tokens, value, false) as Json;
        break;
      }
      case 'test':
        if (JSON.stringify(getAt(doc, tokens)) !== JSON.stringify(raw.value)) {
          throw unprocessable(`testing value ${raw.path} failed`);
        }
        break;
      default:
        throw badRequest(`unknown json patch operation: ${String(raw.op)}`);
    }
  }
  return doc;
}
