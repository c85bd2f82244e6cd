import { writeKubeconfig as writeKubeconfigFile } from '../helpers/kubeconfig.ts';

/** A kubeconfig pointing at the API emulation (plain http, inline bearer token). */
export function writeKubeconfig(dir: string, server: string, token: string): string {
  return writeKubeconfigFile(dir, server, { token });
}

export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
