import { createRequire } from 'node:module';
import type { Plugin } from './plugin.ts';

/**
 * Every plugin ktrail has, by kind and type. A plugin's module (its schema,
 * and through it the implementation and its libraries: the AWS SDK's signer,
 * the Kubernetes client, undici) is loaded only when a config names its type,
 * so a file → http config never loads the s3 or Kubernetes code, and `check`
 * stays small. A `type:` that is not listed here fails validation with the
 * list of known types.
 *
 * Modules are required synchronously (Node loads an ES module with require()
 * when it has no top-level await), so config validation stays synchronous.
 */
const load = createRequire(import.meta.url);

type Kind = Plugin['kind'];

const entries: ReadonlyArray<{ kind: Kind; type: string; get(): Plugin }> = [
  // inputs
  { kind: 'input', type: 'audit_file', get: () => (load('./inputs/audit-file/plugin.ts') as typeof import('./inputs/audit-file/plugin.ts')).auditFileInput as Plugin },
  {
    kind: 'input',
    type: 'audit_webhook',
    get: () => (load('./inputs/audit-webhook/plugin.ts') as typeof import('./inputs/audit-webhook/plugin.ts')).auditWebhookInput as Plugin,
  },
  { kind: 'input', type: 'k8s_events', get: () => (load('./inputs/k8s-events/plugin.ts') as typeof import('./inputs/k8s-events/plugin.ts')).k8sEventsInput as Plugin },
  // processors
  { kind: 'processor', type: 'filter', get: () => (load('./processors/filter/filter.ts') as typeof import('./processors/filter/filter.ts')).filterProcessor as Plugin },
  { kind: 'processor', type: 'redact', get: () => (load('./processors/redact/redact.ts') as typeof import('./processors/redact/redact.ts')).redactProcessor as Plugin },
  {
    kind: 'processor',
    type: 'k8s_metadata',
    get: () => (load('./processors/k8s-metadata/k8s-metadata.ts') as typeof import('./processors/k8s-metadata/k8s-metadata.ts')).k8sMetadataProcessor as Plugin,
  },
  // outputs
  { kind: 'output', type: 'stdout', get: () => (load('./outputs/stdout/stdout.ts') as typeof import('./outputs/stdout/stdout.ts')).stdoutOutput as Plugin },
  { kind: 'output', type: 'file', get: () => (load('./outputs/file/file.ts') as typeof import('./outputs/file/file.ts')).fileOutput as Plugin },
  {
    kind: 'output',
    type: 'elasticsearch',
    get: () => (load('./outputs/elasticsearch/elasticsearch.ts') as typeof import('./outputs/elasticsearch/elasticsearch.ts')).elasticsearchOutput as Plugin,
  },
  { kind: 'output', type: 's3', get: () => (load('./outputs/s3/s3.ts') as typeof import('./outputs/s3/s3.ts')).s3Output as Plugin },
  { kind: 'output', type: 'http', get: () => (load('./outputs/http/http.ts') as typeof import('./outputs/http/http.ts')).httpOutput as Plugin },
  { kind: 'output', type: 'splunk_hec', get: () => (load('./outputs/splunk-hec/splunk-hec.ts') as typeof import('./outputs/splunk-hec/splunk-hec.ts')).splunkHecOutput as Plugin },
  { kind: 'output', type: 'otlp_http', get: () => (load('./outputs/otlp-http/otlp-http.ts') as typeof import('./outputs/otlp-http/otlp-http.ts')).otlpHttpOutput as Plugin },
];

/**
 * Work an input type can start on its raw, unvalidated config, before the
 * validator (zod) has even loaded: audit_file opens its files. Each preparer
 * module loads without the plugin's schema. Results reach `prepare` as `early`.
 */
const early: Readonly<Record<string, () => (raw: unknown) => Promise<unknown>>> = {
  audit_file: () => (load('./inputs/audit-file/early.ts') as typeof import('./inputs/audit-file/early.ts')).openEarly,
};

export function earlyPreparer(type: unknown): ((raw: unknown) => Promise<unknown>) | undefined {
  return typeof type === 'string' && Object.hasOwn(early, type) ? early[type]!() : undefined;
}

/** The types of one kind, in registry order (for messages and docs). */
export function pluginTypes(kind: Kind): string[] {
  return entries.filter((e) => e.kind === kind).map((e) => e.type);
}

/** The plugin of that kind and type, loading its module on first use; undefined if there is none. */
export function findPlugin(kind: Kind, type: unknown): Plugin | undefined {
  const e = entries.find((x) => x.kind === kind && x.type === type);
  return e?.get();
}

/** Every plugin, loaded (docs, conformance tests). */
export function allPlugins(): Plugin[] {
  return entries.map((e) => e.get());
}
