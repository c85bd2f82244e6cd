import { Counter, Gauge } from 'prom-client';
import { logEvents } from '../../telemetry/log-events.ts';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `k8s_metadata` plugin exports (docs/metrics.md lists them with the rest). */
export const k8sMetadataMetrics = pluginMetrics('k8s_metadata', (registers) => ({
  cacheSize: new Gauge({ name: 'ktrail_k8s_metadata_cache_pods', help: 'Pods held in the metadata cache (including recently deleted).', labelNames: ['processor'], registers }),
  lookups: new Counter({ name: 'ktrail_k8s_metadata_lookups_total', help: 'Cache lookups by result (hit, miss, negative_hit).', labelNames: ['processor', 'result'], registers }),
  apiRequests: new Counter({ name: 'ktrail_k8s_metadata_api_requests_total', help: 'Kubernetes API requests made by the cache (list, watch, get).', labelNames: ['processor', 'verb'], registers }),
  enrichFailures: new Counter({ name: 'ktrail_k8s_metadata_enrich_failures_total', help: 'Records passed on without enrichment, by reason (timeout, api_error, not_found).', labelNames: ['processor', 'reason'], registers }),
}));

/** The log lines of the `k8s_metadata` plugin an operator may act on (docs/logs.md lists them). */
export const { names: k8sMetadataEvent, catalog: k8sMetadataLogEvents } = logEvents('k8s_metadata', {
  kubeconfig_warning: { level: 'warn', help: 'Something in the kubeconfig is ignored or unusual (e.g. kubectl-only keys).' },
  synced: { level: 'info', help: 'The pod (and ReplicaSet) caches are synced.' },
  relist: { level: 'info', help: 'The watch answered 410 Gone: relisting.' },
  watch_ended: { level: 'warn', help: 'A watch or list failed; resuming with backoff.' },
  pods_deleted: { level: 'info', help: 'Pods were deleted while the watch was away (found by the relist).' },
  loop_stopped: { level: 'error', help: 'A list/watch loop stopped; records pass on unenriched.' },
  unenriched: { level: 'warn', help: 'Records passed on without pod metadata, counts by reason. At most once a minute.' },
  get_failed: { level: 'warn', help: 'A pod GET failed; records pass on unenriched. At most once a minute.' },
});
