import fs from 'node:fs';
import path from 'node:path';

/** A kubeconfig for the API emulation (plain http; bearer token inline or from a file). */
export interface KubeconfigOptions {
  token?: string;
  tokenFile?: string;
  namespace?: string;
}

/** A kubeconfig for the emulation (plain http, bearer token inline or from a file). */
export function writeKubeconfig(dir: string, server: string, opts: KubeconfigOptions = {}): string {
  const user: string[] = [];
  if (opts.token !== undefined) user.push(`    token: ${opts.token}`);
  if (opts.tokenFile !== undefined) user.push(`    token-file: ${opts.tokenFile}`);
  const file = path.join(dir, 'kubeconfig');
  fs.writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: emu',
      '  cluster:',
      `    server: ${server}`,
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
