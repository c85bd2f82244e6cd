import type { CheckFindings, ProbeContext, ProbeResult } from '../plugin.ts';
import { maskUrl, scrubText } from '../telemetry/scrub.ts';
import { describeTransportError } from '../delivery/http/probe.ts';
import { KubeApiError, KubeClient } from './client.ts';
import { kubeconfigWarnings, loadKubeConnection, type KubeConnectionOptions } from './config.ts';

/**
 * `ktrail check` for the components that talk to the Kubernetes API
 * (k8s_events, k8s_metadata): kubeconfig findings without connecting, and
 * with `--connect` one authenticated request like a health check.
 */

export function inspectKube(opts: KubeConnectionOptions): CheckFindings {
  return { warnings: kubeconfigWarnings(opts), notes: [] };
}

/**
 * GET /version says whether the server is reachable with valid TLS, but
 * anonymous users may read it; the list of `authPath` (limit=1) is what the
 * component will do, so it shows whether the credentials are accepted and
 * allowed.
 */
export async function probeKube(opts: KubeConnectionOptions, authPath: string, ctx: ProbeContext): Promise<ProbeResult[]> {
  let client: KubeClient;
  try {
    client = new KubeClient(loadKubeConnection(opts), { requestTimeoutMs: 10_000 });
  } catch (err) {
    return [{ target: 'Kubernetes API', ok: false, detail: `no connection: ${scrubText((err as Error).message)}` }];
  }
  const server = maskUrl(client.server);
  const tls = client.server.startsWith('https:') ? 'TLS valid' : 'plain HTTP (no TLS)';
  const target = `GET ${server}${authPath}?limit=1`;
  try {
    let version = '';
    try {
      const v = await client.request<{ gitVersion?: string }>({ path: '/version', signal: ctx.signal });
      if (v?.gitVersion) version = ` (Kubernetes ${v.gitVersion})`;
    } catch (err) {
      // An API server that refuses anonymous /version still answers: only a transport failure ends here.
      if (!(err instanceof KubeApiError)) return [{ target, ok: false, detail: describeTransportError(err, "the kubeconfig's certificate-authority") }];
    }
    try {
      await client.request({ path: authPath, query: { limit: 1 }, signal: ctx.signal });
      return [{ target, ok: true, detail: `reachable, ${tls}, credentials accepted${version}` }];
    } catch (err) {
      if (!(err instanceof KubeApiError)) return [{ target, ok: false, detail: describeTransportError(err, "the kubeconfig's certificate-authority") }];
      const why = scrubText(err.status?.message ?? err.message).slice(0, 200);
      if (err.statusCode === 401) return [{ target, ok: false, detail: `reachable, ${tls}, credentials rejected (HTTP 401: ${why})` }];
      if (err.statusCode === 403) {
        return [{ target, ok: false, detail: `reachable, ${tls}, credentials accepted but not allowed to list (HTTP 403: ${why}); check the RBAC` }];
      }
      return [{ target, ok: false, detail: `reachable, ${tls}, but the list answered HTTP ${err.statusCode}: ${why}` }];
    }
  } finally {
    await client.close();
  }
}
