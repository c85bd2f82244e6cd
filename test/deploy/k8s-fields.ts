import fs from 'node:fs';
import path from 'node:path';

/**
 * Unknown-field check for Kubernetes objects.
 *
 * kubernetes-models' `validate()` checks types, enums and required fields but
 * accepts any extra key, so a misspelt `readOnlyRootFileSystem` would pass it
 * — and the API server (field validation "Strict" since 1.27) would reject
 * the manifest, or an older one would silently drop the setting. The package
 * also ships a `.d.ts` interface for every kind; this walks an object along
 * those interfaces and reports every key the interface does not declare.
 * Where a type cannot be resolved (IntOrString, Quantity, free-form JSON) the
 * value is accepted as is: the check never claims more than it knows.
 */

const MODELS_ROOT = path.join(import.meta.dirname, '../../node_modules');

interface Field {
  /** The raw TypeScript type text of the property. */
  type: string;
  /** The file the property's interface came from, to resolve imports. */
  file: string;
}

interface InterfaceShape {
  fields: Map<string, Field>;
  extendsTypeMeta: boolean;
}

const shapes = new Map<string, InterfaceShape | null>();

/** Model file of a top-level kind: `apps/v1` + `DaemonSet` → kubernetes-models/apps/v1/DaemonSet.d.ts. */
export function modelFile(apiVersion: string, kind: string): string {
  return path.join(MODELS_ROOT, 'kubernetes-models', apiVersion, `${kind}.d.ts`);
}

/** Every path (`spec.template.spec.containers[0].securityContext.foo`) whose key the schema does not know. */
export function unknownFields(obj: unknown, apiVersion: string, kind: string): string[] {
  const file = modelFile(apiVersion, kind);
  // A kind the package does not know must fail loudly, not pass unchecked.
  if (!fs.existsSync(file) || !loadShape(file, `I${kind}`)) throw new Error(`no kubernetes-models interface for ${apiVersion} ${kind}`);
  const out: string[] = [];
  walkInterface(obj, file, `I${kind}`, '', out);
  return out;
}

function walkInterface(value: unknown, file: string, iface: string, at: string, out: string[]): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const shape = loadShape(file, iface);
  if (!shape) return;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const here = at === '' ? key : `${at}.${key}`;
    const field = shape.fields.get(key);
    if (!field) {
      if (shape.extendsTypeMeta && (key === 'apiVersion' || key === 'kind')) continue;
      out.push(here);
      continue;
    }
    walkType(v, field.type, field.file, here, out);
  }
}

function walkType(value: unknown, type: string, file: string, at: string, out: string[]): void {
  const t = type.trim();
  const arrayOf = /^Array<(.+)>$/s.exec(t) ?? /^(.+)\[\]$/s.exec(t);
  if (arrayOf) {
    if (Array.isArray(value)) value.forEach((v, i) => walkType(v, arrayOf[1]!, file, `${at}[${i}]`, out));
    return;
  }
  const mapOf = /^\{\s*\[key: string\]:\s*(.+?);?\s*\}$/s.exec(t);
  if (mapOf) {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walkType(v, mapOf[1]!, file, `${at}.${k}`, out);
    }
    return;
  }
  if (!/^I[A-Za-z0-9]+$/.test(t)) return;
  const target = resolveImport(file, t);
  if (!target) return;
  walkInterface(value, target.file, target.iface, at, out);
}

/** `IIoK8sApiCoreV1Probe` imported from "./Probe.js" → that file's `IProbe`. */
function resolveImport(file: string, alias: string): { file: string; iface: string } | undefined {
  const text = fs.readFileSync(file, 'utf8');
  const m = new RegExp(`import \\{ ${alias} \\} from "([^"]+)";`).exec(text);
  if (!m) return undefined;
  const spec = m[1]!;
  const base = spec.startsWith('.') ? path.resolve(path.dirname(file), spec.replace(/\.js$/, '')) : path.join(MODELS_ROOT, spec);
  const target = `${base}.d.ts`;
  if (!fs.existsSync(target)) return undefined;
  return { file: target, iface: `I${path.basename(base)}` };
}

function loadShape(file: string, iface: string): InterfaceShape | null {
  const cacheKey = `${file}#${iface}`;
  const cached = shapes.get(cacheKey);
  if (cached !== undefined) return cached;
  const text = fs.readFileSync(file, 'utf8');
  const start = new RegExp(`export interface ${iface}( extends ([A-Za-z]+))? \\{\\n`).exec(text);
  if (!start) {
    shapes.set(cacheKey, null);
    return null;
  }
  const fields = new Map<string, Field>();
  // Properties are indented four spaces; a type may span lines (inline maps).
  const body = text.slice(start.index + start[0].length);
  const lines = body.split('\n');
  let current: { name: string; type: string } | undefined;
  const flush = () => {
    if (current) fields.set(current.name, { type: current.type.replace(/;\s*$/, ''), file });
    current = undefined;
  };
  for (const line of lines) {
    if (line === '}') break;
    const prop = /^ {4}"([^"]+)"\??: (.*)$/.exec(line);
    if (prop) {
      flush();
      current = { name: prop[1]!, type: prop[2]! };
    } else if (current && /^ {5,}|^ {4}\}/.test(line) && !/^\s*(\/\*\*|\*)/.test(line)) {
      current.type += ` ${line.trim()}`;
    } else if (/^\s*(\/\*\*|\*)/.test(line)) {
      flush();
    }
  }
  flush();
  const shape = { fields, extendsTypeMeta: start[2] === 'TypeMeta' };
  shapes.set(cacheKey, shape);
  return shape;
}
