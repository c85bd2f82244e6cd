import fs from 'node:fs';
import path from 'node:path';

/** A kubeconfig pointing at the API emulation (plain http, inline bearer token). */
export function writeKubeconfig(dir: string, server: string, token: string): string {
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
      '- name: ktrail',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: emu',
      '  context: { cluster: emu, user: ktrail }',
      'current-context: emu',
      '',
    ].join('\n'),
  );
  return file;
}

export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
