import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { closestKey } from '../config/messages.ts';
import { ErrorCode, KtrailError } from '../errors.ts';

/**
 * A kubeconfig file as kubectl reads it, before @kubernetes/client-node sees it.
 *
 * kubectl (client-go's clientcmd/api/v1 types) and client-node do not spell
 * every key alike: kubectl's bearer-token file is `tokenFile`, client-node
 * reads only `token-file`, so a kubeconfig written for kubectl used to send no
 * token at all. Here both spellings are read into one normalised user, every
 * key neither knows is reported with its path, and so are referenced files
 * that do not exist. Relative file paths are relative to the kubeconfig's own
 * directory, as kubectl resolves them.
 */

/** Keys kubectl accepts, per place in the file (client-go clientcmd/api/v1). */
const KNOWN_KEYS = {
  top: ['kind', 'apiVersion', 'preferences', 'clusters', 'users', 'contexts', 'current-context', 'extensions'],
  preferences: ['colors', 'extensions'],
  namedCluster: ['name', 'cluster'],
  cluster: [
    'server',
    'tls-server-name',
    'insecure-skip-tls-verify',
    'certificate-authority',
    'certificate-authority-data',
    'proxy-url',
    'disable-compression',
    'extensions',
  ],
  namedUser: ['name', 'user'],
  // `token-file` is client-node's spelling (kubectl ignores it); ktrail has always read it, so it stays accepted.
  user: [
    'client-certificate',
    'client-certificate-data',
    'client-key',
    'client-key-data',
    'token',
    'tokenFile',
    'token-file',
    'as',
    'as-uid',
    'as-groups',
    'as-user-extra',
    'username',
    'password',
    'auth-provider',
    'exec',
    'extensions',
  ],
  namedContext: ['name', 'context'],
  context: ['cluster', 'user', 'namespace', 'extensions'],
  extension: ['name', 'extension'],
  authProvider: ['name', 'config'],
  exec: ['command', 'args', 'env', 'apiVersion', 'installHint', 'provideClusterInfo', 'interactiveMode'],
  execEnv: ['name', 'value'],
} as const satisfies Record<string, readonly string[]>;

/** Something about a kubeconfig that does not stop loading it, but would surprise (unknown key, missing file). */
export interface KubeconfigFinding {
  file: string;
  /** Where in the kubeconfig, e.g. `users[0].user.tokn`. */
  path: string;
  message: string;
}

export function formatFinding(f: KubeconfigFinding): string {
  return `kubeconfig ${f.file}: ${f.path}: ${f.message}`;
}

type Obj = Record<string, unknown>;

export interface KubeconfigUser {
  name: string;
  /** Absolute path of the bearer-token file (`tokenFile` or `token-file`). */
  tokenFile?: string;
  /** How the file spelt it: `tokenFile` (kubectl) or `token-file` (client-node). */
  tokenFileKey?: 'tokenFile' | 'token-file';
  impersonate?: Impersonation;
}

export interface Impersonation {
  user?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface KubeconfigFile {
  file: string;
  /** The document to hand to client-node: kubectl's spellings normalised, token files left to ktrail. */
  forClientNode: Obj;
  users: Map<string, KubeconfigUser>;
  findings: KubeconfigFinding[];
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

export function readKubeconfigFile(file: string): KubeconfigFile {
  let doc: unknown;
  try {
    doc = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new KtrailError(ErrorCode.CONFIG_READ, `cannot load kubeconfig ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObj(doc)) throw new KtrailError(ErrorCode.CONFIG_INVALID, `kubeconfig ${file}: expected a mapping at the top level`);
  const findings: KubeconfigFinding[] = [];
  const unknown = (obj: unknown, known: readonly string[], where: string, label = '') => {
    if (!isObj(obj)) return;
    for (const key of Object.keys(obj)) {
      if (known.includes(key)) continue;
      const guess = closestKey(key, known);
      findings.push({ file, path: `${where}.${key}`.replace(/^\./, ''), message: `unknown key "${key}"${label}, ignored${guess ? `; did you mean "${guess}"?` : ''}` });
    }
  };
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const named = (e: unknown) => (isObj(e) && typeof e.name === 'string' ? ` (of "${e.name}")` : '');
  const extensions = (v: unknown, where: string) => list(v).forEach((e, i) => unknown(e, KNOWN_KEYS.extension, `${where}.extensions[${i}]`));

  unknown(doc, KNOWN_KEYS.top, '');
  extensions(doc.extensions, '');
  unknown(doc.preferences, KNOWN_KEYS.preferences, 'preferences');
  if (isObj(doc.preferences)) extensions(doc.preferences.extensions, 'preferences');
  list(doc.clusters).forEach((e, i) => {
    unknown(e, KNOWN_KEYS.namedCluster, `clusters[${i}]`, named(e));
    if (!isObj(e)) return;
    unknown(e.cluster, KNOWN_KEYS.cluster, `clusters[${i}].cluster`, named(e));
    if (isObj(e.cluster)) extensions(e.cluster.extensions, `clusters[${i}].cluster`);
  });
  list(doc.contexts).forEach((e, i) => {
    unknown(e, KNOWN_KEYS.namedContext, `contexts[${i}]`, named(e));
    if (!isObj(e)) return;
    unknown(e.context, KNOWN_KEYS.context, `contexts[${i}].context`, named(e));
    if (isObj(e.context)) extensions(e.context.extensions, `contexts[${i}].context`);
  });

  const dir = path.dirname(path.resolve(file));
  const users = new Map<string, KubeconfigUser>();
  const usersForClientNode: unknown[] = [];
  list(doc.users).forEach((e, i) => {
    unknown(e, KNOWN_KEYS.namedUser, `users[${i}]`, named(e));
    if (!isObj(e)) {
      usersForClientNode.push(e);
      return;
    }
    const where = `users[${i}].user`;
    const u = isObj(e.user) ? e.user : {};
    unknown(u, KNOWN_KEYS.user, where, named(e));
    extensions(u.extensions, where);
    if (isObj(u.exec)) {
      unknown(u.exec, KNOWN_KEYS.exec, `${where}.exec`, named(e));
      list(u.exec.env).forEach((v, j) => unknown(v, KNOWN_KEYS.execEnv, `${where}.exec.env[${j}]`, named(e)));
    }
    unknown(u['auth-provider'], KNOWN_KEYS.authProvider, `${where}.auth-provider`, named(e));
    const entry: KubeconfigUser = { name: typeof e.name === 'string' ? e.name : '' };
    // kubectl's spelling first; client-node's is the fallback.
    const tfKey = (['tokenFile', 'token-file'] as const).find((k) => typeof u[k] === 'string' && u[k] !== '');
    if (tfKey !== undefined) {
      entry.tokenFile = path.resolve(dir, u[tfKey] as string);
      entry.tokenFileKey = tfKey;
    }
    const imp = impersonation(u);
    if (imp) entry.impersonate = imp;
    if (entry.name !== '' && !users.has(entry.name)) users.set(entry.name, entry);
    // client-node would read `token-file` once, at load, relative to the working directory, and throw
    // if it is missing: ktrail reads (and re-reads) it itself, so client-node does not get it.
    const rest: Obj = { ...u };
    delete rest.tokenFile;
    delete rest['token-file'];
    usersForClientNode.push({ ...e, user: rest });
  });
  return { file, forClientNode: { ...doc, users: usersForClientNode }, users, findings };
}

function impersonation(u: Obj): Impersonation | undefined {
  const out: Impersonation = {};
  if (typeof u.as === 'string' && u.as !== '') out.user = u.as;
  if (typeof u['as-uid'] === 'string' && u['as-uid'] !== '') out.uid = u['as-uid'];
  if (Array.isArray(u['as-groups'])) out.groups = u['as-groups'].filter((g): g is string => typeof g === 'string');
  if (isObj(u['as-user-extra'])) {
    out.extra = {};
    for (const [k, v] of Object.entries(u['as-user-extra'])) {
      out.extra[k] = (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string');
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Files named by the cluster and user in use that do not exist: CA, client
 * certificate and key, token file. Paths are relative to the kubeconfig's directory.
 */
export function missingFiles(files: readonly KubeconfigFile[], clusterName: string, userName: string | undefined): KubeconfigFinding[] {
  const out: KubeconfigFinding[] = [];
  const check = (kf: KubeconfigFile, where: string, key: string, value: unknown) => {
    if (typeof value !== 'string' || value === '') return;
    const abs = path.resolve(path.dirname(path.resolve(kf.file)), value);
    if (fs.existsSync(abs)) return;
    out.push({ file: kf.file, path: `${where}.${key}`, message: `file ${abs} does not exist` });
  };
  const find = (section: 'clusters' | 'users', name: string | undefined) => {
    if (name === undefined) return undefined;
    for (const kf of files) {
      const entries = kf.forClientNode[section];
      if (!Array.isArray(entries)) continue;
      const i = entries.findIndex((e) => isObj(e) && e.name === name);
      if (i !== -1) return { kf, i, entry: entries[i] as Obj };
    }
    return undefined;
  };
  const c = find('clusters', clusterName);
  if (c && isObj(c.entry.cluster)) check(c.kf, `clusters[${c.i}].cluster`, 'certificate-authority', c.entry.cluster['certificate-authority']);
  const u = find('users', userName);
  if (u && isObj(u.entry.user)) {
    const where = `users[${u.i}].user`;
    check(u.kf, where, 'client-certificate', u.entry.user['client-certificate']);
    check(u.kf, where, 'client-key', u.entry.user['client-key']);
    const user = u.kf.users.get(userName!);
    if (user?.tokenFile !== undefined && !fs.existsSync(user.tokenFile)) {
      out.push({ file: u.kf.file, path: `${where}.${user.tokenFileKey}`, message: `token file ${user.tokenFile} does not exist` });
    }
  }
  return out;
}
