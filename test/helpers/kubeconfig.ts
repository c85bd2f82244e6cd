import fs from 'node:fs';
import path from 'node:path';

/** A kubeconfig for the API emulation (plain http; bearer token inline or from a file). */
export interface KubeconfigOptions {
  token?: string;
  tokenFile?: string;
  namespace?: string;
  /** Raw `key: value` lines of the user, after token / tokenFile. */
  user?: string[];
  /** Raw `key: value` lines of the cluster, after its server. */
  cluster?: string[];
  /** File name in `dir` (default `kubeconfig`). */
  fileName?: string;
}

/** A kubeconfig for the emulation (plain http, bearer token inline or from a file). */
export function writeKubeconfig(dir: string, server: string, opts: KubeconfigOptions = {}): string {
  const user: string[] = [];
  if (opts.token !== undefined) user.push(`    token: ${opts.token}`);
  if (opts.tokenFile !== undefined) user.push(`    token-file: ${opts.tokenFile}`);
  for (const l of opts.user ?? []) user.push(`    ${l}`);
  const file = path.join(dir, opts.fileName ?? 'kubeconfig');
  fs.writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: emu',
      '  cluster:',
      `    server: ${server}`,
      ...(opts.cluster ?? []).map((l) => `    ${l}`),
      'users:',
      '- name: collector',
      '  user:',
      ...(user.length > 0 ? user : ['    {}']),
      'contexts:',
      '- name: emu',
      '  context:',
      '    cluster: emu',
      '    user: collector',
      ...(opts.namespace ? [`    namespace: ${opts.namespace}`] : []),
      'current-context: emu',
      '',
    ].join('\n'),
  );
  return file;
}
