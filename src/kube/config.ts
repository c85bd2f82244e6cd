import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Cluster, KubeConfig, User } from '@kubernetes/client-node';
import { Secret } from '../config/secret.ts';
import { ErrorCode, KtrailError } from '../errors.ts';
import { formatFinding, missingFiles, readKubeconfigFile, type Impersonation, type KubeconfigFile, type KubeconfigFinding, type KubeconfigUser } from './kubeconfig-file.ts';

export type { Impersonation };

/**
 * Where the Kubernetes API is and how to authenticate, resolved once from a
 * kubeconfig or the in-cluster service account by @kubernetes/client-node's
 * `KubeConfig`. The requests themselves are made by `KubeClient` over undici:
 * the generated client cannot stop reading a watch body when the spool is
 * full, and its token-file authenticator re-reads the token only once a
 * minute, not on a 401 (see docs/inputs/k8s_events.md).
 *
 * client-node is imported when a connection is first loaded: it pulls in the
 * whole generated API (about a second of CPU), which an agent without a
 * Kubernetes input should not pay at start.
 */

const requireLazy = createRequire(import.meta.url);

function kubeConfigClass(): typeof KubeConfig {
  return (requireLazy('@kubernetes/client-node') as typeof import('@kubernetes/client-node')).KubeConfig;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeTlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

/** How requests are authenticated. */
export type KubeAuth =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  /** A file re-read when it changes and after a 401 (projected service-account tokens rotate). */
  | { kind: 'token-file'; file: Secret }
  | { kind: 'basic'; username: string; password: string }
  /** exec / auth-provider plugins of a kubeconfig, delegated to client-node. */
  | { kind: 'kubeconfig-plugin'; kubeConfig: KubeConfig };

export interface KubeConnection {
  /** Base URL, no trailing slash. */
  server: string;
  tls: KubeTlsOptions;
  auth: KubeAuth;
  /** The context's namespace, or the pod's own namespace in-cluster. */
  namespace: string | undefined;
  source: 'in-cluster' | 'kubeconfig';
  /** For logs: the kubeconfig file or the service-account directory. */
  origin: string;
  /** kubeconfig `as`, `as-uid`, `as-groups`, `as-user-extra`: sent as Impersonate-* headers. */
  impersonate?: Impersonation;
  /** kubeconfig `proxy-url` (http:// or https:// proxies). */
  proxyUrl?: string;
  /** What the kubeconfig holds that ktrail ignores or cannot find (unknown keys, missing files): log them at warn. */
  warnings?: readonly string[];
}

export interface KubeConnectionOptions {
  /** A kubeconfig file. Unset: in-cluster when running in a pod, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string | undefined;
  /** A context of the kubeconfig other than its current-context. */
  context?: string | undefined;
  /** The service-account directory (tests point it at a temp dir). */
  serviceAccountDir?: string;
}

export function loadKubeConnection(opts: KubeConnectionOptions = {}): KubeConnection {
  const KubeConfigImpl = kubeConfigClass();
  const env = process.env;
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (opts.kubeconfig === undefined && env.KUBERNETES_SERVICE_HOST && fs.existsSync(path.join(saDir, 'token'))) {
    return inCluster(new KubeConfigImpl(), saDir);
  }
  const files = opts.kubeconfig !== undefined ? [opts.kubeconfig] : kubeconfigFiles(env);
  if (files.length === 0) {
    throw new KtrailError(
      ErrorCode.CONFIG_INVALID,
      'no Kubernetes API configuration found: not running in a pod (no KUBERNETES_SERVICE_HOST and service-account token), ' +
        'no $KUBECONFIG and no ~/.kube/config; set the input\'s "kubeconfig" option',
    );
  }
  const { kc, parsed, cluster, user, findings } = resolveKubeconfig(files, opts.context);
  const ctxObj = kc.getContextObject(kc.getCurrentContext());
  const rawUser = user ? parsed.map((p) => p.users.get(user.name)).find((u) => u !== undefined) : undefined;
  return {
    server: cluster.server.replace(/\/+$/, ''),
    tls: tlsOptions(cluster, user, files),
    auth: authFor(kc, user, rawUser),
    ...(rawUser?.impersonate ? { impersonate: rawUser.impersonate } : {}),
    ...(cluster.proxyUrl ? { proxyUrl: cluster.proxyUrl } : {}),
    namespace: ctxObj?.namespace,
    source: 'kubeconfig',
    origin: files.join(path.delimiter),
    warnings: findings.map(formatFinding),
  };
}

interface ResolvedKubeconfig {
  kc: KubeConfig;
  parsed: KubeconfigFile[];
  cluster: Cluster;
  user: User | null;
  findings: KubeconfigFinding[];
}

function resolveKubeconfig(files: readonly string[], context: string | undefined): ResolvedKubeconfig {
  const KubeConfigImpl = kubeConfigClass();
  const parsed = files.map((f) => readKubeconfigFile(f));
  const kc = new KubeConfigImpl();
  try {
    loadInto(kc, parsed[0]!);
    for (const p of parsed.slice(1)) {
      const more = new KubeConfigImpl();
      loadInto(more, p);
      kc.mergeConfig(more, true);
    }
  } catch (err) {
    throw new KtrailError(ErrorCode.CONFIG_READ, `cannot load kubeconfig ${files.join(path.delimiter)}: ${(err as Error).message}`, { cause: err });
  }
  if (context !== undefined) {
    if (!kc.getContextObject(context)) {
      throw new KtrailError(ErrorCode.CONFIG_INVALID, `kubeconfig ${files[0]} has no context "${context}"`);
    }
    kc.setCurrentContext(context);
  }
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster) {
    throw new KtrailError(ErrorCode.CONFIG_INVALID, `kubeconfig ${files.join(path.delimiter)}: the current context names no known cluster`);
  }
  const findings = [...parsed.flatMap((p) => p.findings), ...missingFiles(parsed, cluster.name, user?.name)];
  return { kc, parsed, cluster, user, findings };
}

/**
 * What `ktrail check` says about the Kubernetes connection a component would
 * use, without connecting: unknown kubeconfig keys, files that do not exist,
 * or why no connection could be built.
 */
export function kubeconfigWarnings(opts: KubeConnectionOptions = {}): string[] {
  const env = process.env;
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (opts.kubeconfig === undefined && env.KUBERNETES_SERVICE_HOST && fs.existsSync(path.join(saDir, 'token'))) return [];
  const files = opts.kubeconfig !== undefined ? [opts.kubeconfig] : kubeconfigFiles(env);
  if (files.length === 0) {
    return ['no Kubernetes API configuration found here: not in a pod, no $KUBECONFIG, no ~/.kube/config (fine if the config is meant for a pod)'];
  }
  try {
    return resolveKubeconfig(files, opts.context).findings.map(formatFinding);
  } catch (err) {
    return [(err as Error).message];
  }
}

/** Hands a normalised kubeconfig to client-node; relative CA/cert/key paths are relative to the file's directory. */
function loadInto(kc: KubeConfig, file: KubeconfigFile): void {
  kc.loadFromString(JSON.stringify(file.forClientNode));
  kc.makePathsAbsolute(path.dirname(path.resolve(file.file)));
}

function inCluster(kc: KubeConfig, saDir: string): KubeConnection {
  // Builds the URL from KUBERNETES_SERVICE_HOST/PORT (IPv6 brackets, http on 80/8080/8001).
  kc.loadFromCluster();
  const cluster = kc.getCurrentCluster()!;
  const caFile = path.join(saDir, 'ca.crt');
  const nsFile = path.join(saDir, 'namespace');
  return {
    server: cluster.server,
    tls: fs.existsSync(caFile) ? { ca: fs.readFileSync(caFile) } : {},
    auth: { kind: 'token-file', file: new Secret({ file: path.join(saDir, 'token') }) },
    namespace: fs.existsSync(nsFile) ? fs.readFileSync(nsFile, 'utf8').trim() : undefined,
    source: 'in-cluster',
    origin: saDir,
    warnings: [],
  };
}

function kubeconfigFiles(env: NodeJS.ProcessEnv): string[] {
  if (env.KUBECONFIG) return env.KUBECONFIG.split(path.delimiter).filter((f) => f !== '');
  const home = env.HOME ?? env.USERPROFILE;
  if (home) {
    const file = path.join(home, '.kube', 'config');
    if (fs.existsSync(file)) return [file];
  }
  return [];
}

function tlsOptions(cluster: Cluster, user: User | null, files: readonly string[]): KubeTlsOptions {
  const tls: KubeTlsOptions = {};
  if (cluster.skipTLSVerify) tls.rejectUnauthorized = false;
  if (cluster.tlsServerName) tls.servername = cluster.tlsServerName;
  const ca = fileOrData(cluster.caFile, cluster.caData, 'certificate-authority', files);
  if (ca) tls.ca = ca;
  const cert = fileOrData(user?.certFile, user?.certData, 'client-certificate', files);
  if (cert) tls.cert = cert;
  const key = fileOrData(user?.keyFile, user?.keyData, 'client-key', files);
  if (key) tls.key = key;
  return tls;
}

function fileOrData(file: string | undefined, data: string | undefined, key: string, files: readonly string[]): Buffer | undefined {
  if (file) {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new KtrailError(ErrorCode.CONFIG_READ, `kubeconfig ${files.join(path.delimiter)}: cannot read the ${key} file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (data) return Buffer.from(data, 'base64');
  return undefined;
}

function authFor(kc: KubeConfig, user: User | null, raw: KubeconfigUser | undefined): KubeAuth {
  if (!user) return { kind: 'none' };
  // kubectl's `tokenFile` (or client-node's `token-file`): read by ktrail, re-read when it changes and after a 401.
  if (raw?.tokenFile) return { kind: 'token-file', file: new Secret({ file: raw.tokenFile }) };
  const providerFile = (user.authProvider as { config?: { tokenFile?: unknown } } | undefined)?.config?.tokenFile;
  if (typeof providerFile === 'string' && providerFile !== '') return { kind: 'token-file', file: new Secret({ file: providerFile }) };
  if (user.exec || user.authProvider) return { kind: 'kubeconfig-plugin', kubeConfig: kc };
  if (user.token) return { kind: 'token', token: user.token };
  if (user.username) return { kind: 'basic', username: user.username, password: user.password ?? '' };
  return { kind: 'none' };
}
