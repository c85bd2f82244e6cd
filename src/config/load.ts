import fs from 'node:fs';
import type { OutputCommonConfig } from '../delivery/config.ts';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { ErrorCode, KtrailError } from '../errors.ts';
import type { InputPlugin, OutputPlugin, Plugin, ProcessorPlugin } from '../plugin.ts';
import { findPlugin, pluginTypes } from '../registry.ts';
import type { ManifestConfig } from '../manifest/config.ts';
import { outputCommonShape, processorCommonShape, topLevelSchema, type ServiceConfig, type SpoolConfig } from './schema.ts';
import { closestKey, describeIssue } from './messages.ts';

/**
 * Loading is "parse, then build": the YAML is parsed, `${ENV}` references are
 * resolved in string values, the whole tree is validated — service, spool and
 * every component against its plugin's schema — and every problem is collected
 * before anything is reported. `create()` only ever sees the validated output.
 */

export interface ConfigProblem {
  /** YAML path, e.g. `outputs.es.batch.max_bytes`. */
  path: string;
  line?: number;
  message: string;
  fix?: string;
}

export class ConfigError extends KtrailError {
  readonly problems: ConfigProblem[];
  constructor(source: string, problems: ConfigProblem[]) {
    super(ErrorCode.CONFIG_INVALID, formatProblems(source, problems));
    this.problems = problems;
  }
}

export function formatProblems(source: string, problems: ConfigProblem[]): string {
  const head = `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'} found`;
  const lines = problems.map((p) => {
    const where = p.line !== undefined ? `${p.path || '(top level)'} (line ${p.line})` : p.path || '(top level)';
    return `  - ${where}: ${p.message}${p.fix ? `\n    fix: ${p.fix}` : ''}`;
  });
  return [head, ...lines].join('\n');
}

export interface ComponentConfig<P extends Plugin> {
  name: string;
  plugin: P;
  match: string[];
  /** Validated plugin config, with the common keys of its kind (typed for outputs: the delivery keys). */
  config: P extends OutputPlugin ? OutputCommonConfig & Record<string, unknown> : Record<string, unknown>;
}

export interface AgentConfig {
  source: string;
  service: ServiceConfig;
  spool: SpoolConfig;
  manifest: ManifestConfig;
  inputs: Array<ComponentConfig<InputPlugin>>;
  processors: Array<ComponentConfig<ProcessorPlugin>>;
  outputs: Array<ComponentConfig<OutputPlugin>>;
}

const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Plugins beyond the registry's (tests register fakes this way). */
  extraPlugins?: readonly Plugin[];
}

export function loadConfigFile(file: string, opts: LoadOptions = {}): AgentConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new KtrailError(ErrorCode.CONFIG_READ, `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return loadConfigText(text, file, opts);
}

export function loadConfigText(text: string, source = '<config>', opts: LoadOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  const extra = opts.extraPlugins ?? [];
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  for (const e of doc.errors) {
    const pos = lineCounter.linePos(e.pos[0]);
    problems.push({ path: '', line: pos.line, message: `YAML syntax: ${e.message.split('\n')[0]}`, fix: 'correct the YAML syntax at that line' });
  }
  if (problems.length > 0) throw new ConfigError(source, problems);

  const lineOf = (path: readonly PropertyKey[]): number | undefined => nodeLine(doc, lineCounter, path);
  const envRefs = new Set<string>();
  const raw = interpolate(doc.toJS() ?? {}, env, [], problems, lineOf, envRefs);

  const top = parseWithEnv(topLevelSchema, raw, [], envRefs);
  if (!top.success) pushZodIssues(problems, top.error, [], topLevelSchema, lineOf);

  const rawObj = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const inputs = validateSection<InputPlugin>(extra, 'inputs', rawObj.inputs, 'input', {}, problems, lineOf, envRefs);
  const processors = validateSection<ProcessorPlugin>(extra, 'processors', rawObj.processors, 'processor', processorCommonShape, problems, lineOf, envRefs);
  const outputs = validateSection<OutputPlugin>(extra, 'outputs', rawObj.outputs, 'output', outputCommonShape, problems, lineOf, envRefs);

  if (top.success) {
    if (Object.keys(top.data.inputs).length === 0) {
      problems.push({ path: 'inputs', line: lineOf(['inputs']), message: 'no inputs are configured', fix: 'add at least one input, e.g. an audit_file input' });
    }
    if (Object.keys(top.data.outputs).length === 0) {
      problems.push({ path: 'outputs', line: lineOf(['outputs']), message: 'no outputs are configured', fix: 'add at least one output, e.g. a file or stdout output' });
    }
  }
  checkRouting(inputs, processors, outputs, problems, lineOf);

  if (problems.length > 0 || !top.success) throw new ConfigError(source, dedupeByPath(problems));
  return { source, service: top.data.service, spool: top.data.spool, manifest: top.data.manifest, inputs, processors, outputs };
}

function validateSection<P extends Plugin>(
  extra: readonly Plugin[],
  section: 'inputs' | 'processors' | 'outputs',
  value: unknown,
  kind: P['kind'],
  commonShape: Record<string, z.ZodType>,
  problems: ConfigProblem[],
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
  envRefs: ReadonlySet<string>,
): Array<ComponentConfig<P>> {
  const out: Array<ComponentConfig<P>> = [];
  if (!value || typeof value !== 'object' || Array.isArray(value)) return out;
  const extraOfKind = extra.filter((p) => p.kind === kind);
  for (const [name, entry] of Object.entries(value as Record<string, unknown>)) {
    const base = [section, name];
    if (!NAME_RE.test(name)) {
      problems.push({
        path: base.join('.'),
        line: lineOf(base),
        message: `"${name}" is not a valid ${kind} name`,
        fix: 'use lower-case letters, digits, "-" and "_" (at most 63 characters), starting with a letter or digit',
      });
    }
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) {
      problems.push({ path: base.join('.'), line: lineOf(base), message: `expected a mapping with a "type" key, got ${describeValue(entry)}`, fix: `write ${section}.${name}: { type: ... }` });
      continue;
    }
    const type = (entry as Record<string, unknown>).type;
    const plugin = (extraOfKind.find((p) => p.type === type) ?? findPlugin(kind, type)) as P | undefined;
    if (!plugin) {
      const names = [...pluginTypes(kind), ...extraOfKind.map((p) => p.type)];
      const guess = typeof type === 'string' ? closestKey(type, names) : undefined;
      problems.push({
        path: [...base, 'type'].join('.'),
        line: lineOf([...base, 'type']) ?? lineOf(base),
        message: type === undefined ? `the ${kind} has no "type"` : `unknown ${kind} type ${JSON.stringify(type)}`,
        fix: `${guess ? `did you mean "${guess}"? ` : ''}${kind} types are: ${names.join(', ')}`,
      });
      continue;
    }
    const schema = plugin.schema.extend({ type: z.literal(plugin.type), ...commonShape });
    const parsed = parseWithEnv(schema, entry, base, envRefs);
    if (!parsed.success) {
      pushZodIssues(problems, parsed.error, base, schema, lineOf);
      continue;
    }
    const config = parsed.data as ComponentConfig<P>['config'];
    out.push({ name, plugin, match: (config.match as string[] | undefined) ?? [], config });
  }
  return out;
}

/** An unset variable also fails the key's own validation; report the cause only. */
function dedupeByPath(problems: ConfigProblem[]): ConfigProblem[] {
  const envPaths = new Set(problems.filter((p) => p.message.startsWith('environment variable')).map((p) => p.path));
  return problems.filter((p) => !envPaths.has(p.path) || p.message.startsWith('environment variable'));
}

export function matches(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => {
    if (p === '*' || p === name) return true;
    if (!p.includes('*')) return false;
    const re = new RegExp(`^${p.split('*').map(escapeRe).join('.*')}$`);
    return re.test(name);
  });
}

function escapeRe(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

function checkRouting(
  inputs: Array<ComponentConfig<InputPlugin>>,
  processors: Array<ComponentConfig<ProcessorPlugin>>,
  outputs: Array<ComponentConfig<OutputPlugin>>,
  problems: ConfigProblem[],
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
): void {
  const inputNames = inputs.map((i) => i.name);
  if (inputNames.length === 0) return;
  for (const [section, list] of [['processors', processors], ['outputs', outputs]] as const) {
    for (const c of list) {
      c.match.forEach((pattern, i) => {
        if (!inputNames.some((n) => matches([pattern], n))) {
          problems.push({
            path: `${section}.${c.name}.match[${i}]`,
            line: lineOf([section, c.name, 'match', i]) ?? lineOf([section, c.name]),
            message: `"${pattern}" matches no input`,
            fix: `name one of the inputs (${inputNames.join(', ')}) or use "*"`,
          });
        }
      });
    }
  }
  if (outputs.length === 0) return;
  for (const input of inputs) {
    if (!outputs.some((o) => matches(o.match, input.name))) {
      problems.push({
        path: `inputs.${input.name}`,
        line: lineOf(['inputs', input.name]),
        message: 'no output matches this input, so its records would go nowhere',
        fix: `add "${input.name}" (or "*") to the match list of an output`,
      });
    }
  }
}

const ENV_REF_RE = /\$?\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_ENV_REF_RE = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

/**
 * Replace `${VAR}` and `${VAR:-default}` in every string value; `$${` is a literal `${`.
 * Paths whose whole value was one reference go to `envRefs`: only there may the
 * text later become a number or boolean (see `parseWithEnv`).
 */
function interpolate(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: PropertyKey[],
  problems: ConfigProblem[],
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
  envRefs: Set<string>,
): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    if (WHOLE_ENV_REF_RE.test(value)) envRefs.add(pathKey(path));
    return value.replace(ENV_REF_RE, (whole, name: string, def: string | undefined) => {
      if (whole.startsWith('$$')) return whole.slice(1);
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (def !== undefined) return def;
      problems.push(
        v === ''
          ? {
              path: formatPath(path),
              line: lineOf(path),
              message: `environment variable ${name} is set but empty`,
              fix: `give ${name} a value, or a default for when it is empty: \${${name}:-value}`,
            }
          : {
              path: formatPath(path),
              line: lineOf(path),
              message: `environment variable ${name} is not set`,
              fix: `set ${name}, or give a default: \${${name}:-value}`,
            },
      );
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], problems, lineOf, envRefs));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env, [...path, k], problems, lineOf, envRefs);
    return out;
  }
  return value;
}

function pathKey(path: readonly PropertyKey[]): string {
  return JSON.stringify(path.map((p) => (typeof p === 'number' ? p : String(p))));
}

/**
 * Environment variables are text, so `concurrency: ${C}` arrives as "4". Such a
 * value becomes a number or boolean only where the schema rejected the string
 * asking for one: a password "123456" stays a string because nothing asks.
 */
function parseWithEnv<S extends z.ZodType>(
  schema: S,
  value: unknown,
  base: readonly PropertyKey[],
  envRefs: ReadonlySet<string>,
): z.ZodSafeParseResult<z.output<S>> {
  let result = schema.safeParse(value, { reportInput: true });
  if (envRefs.size === 0) return result;
  // Each round converts every convertible value reported; more rounds only for values a union hid.
  for (let round = 0; !result.success && round < 4; round++) {
    let changed = false;
    for (const issue of flattenIssues(result.error.issues, [])) {
      if (issue.code !== 'invalid_type' || issue.path.length === 0) continue;
      if (!envRefs.has(pathKey([...base, ...issue.path]))) continue;
      const converted = convertEnvText((issue as { input?: unknown }).input, issue.expected);
      if (converted !== undefined && setAt(value, issue.path, converted)) changed = true;
    }
    if (!changed) break;
    result = schema.safeParse(value, { reportInput: true });
  }
  return result;
}

/** Issues with those of every union branch, paths made relative to the parsed value. */
function flattenIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[]): z.core.$ZodIssue[] {
  const out: z.core.$ZodIssue[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    out.push({ ...issue, path });
    if (issue.code === 'invalid_union') for (const branch of issue.errors) out.push(...flattenIssues(branch, path));
  }
  return out;
}

function convertEnvText(text: unknown, expected: string): number | boolean | undefined {
  if (typeof text !== 'string') return undefined;
  if ((expected === 'number' || expected === 'int') && /^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (expected === 'boolean') {
    if (/^(true|True|TRUE)$/.test(text)) return true;
    if (/^(false|False|FALSE)$/.test(text)) return false;
  }
  return undefined;
}

function setAt(root: unknown, path: readonly PropertyKey[], v: unknown): boolean {
  let cur = root;
  for (const seg of path.slice(0, -1)) {
    if (!cur || typeof cur !== 'object') return false;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  if (!cur || typeof cur !== 'object') return false;
  (cur as Record<PropertyKey, unknown>)[path[path.length - 1]!] = v;
  return true;
}

function pushZodIssues(
  problems: ConfigProblem[],
  error: z.ZodError,
  base: PropertyKey[],
  schema: z.ZodType,
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
): void {
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const p = [...base, ...issue.path, key];
        problems.push({ path: formatPath(p), line: lineOf(p), ...describeIssue(issue, schema, issue.path, key) });
      }
      continue;
    }
    const p = [...base, ...issue.path];
    problems.push({ path: formatPath(p), line: lineOf(p) ?? lineOf(p.slice(0, -1)), ...describeIssue(issue, schema, issue.path) });
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

function nodeLine(doc: Document, lc: LineCounter, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents;
  let keyNode: Node | undefined;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => (isScalar(it.key) ? it.key.value : it.key) === seg);
      if (!pair) return keyNode ? lineAt(lc, keyNode) : undefined;
      keyNode = pair.key as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      keyNode = node as Node;
    } else {
      break;
    }
  }
  return keyNode ? lineAt(lc, keyNode) : node ? lineAt(lc, node as Node) : undefined;
}

function lineAt(lc: LineCounter, node: Node): number | undefined {
  const r = node.range;
  return r ? lc.linePos(r[0]).line : undefined;
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}
