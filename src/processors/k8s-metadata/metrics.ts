import { Counter, Gauge } from 'prom-client';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `k8s_metadata` plugin exports (docs/metrics.md lists them with the rest). */
export const k8sMetadataMetrics = pluginMetrics('k8s_metadata', (registers) => ({
  cacheSize: new Gauge({ name: 'ktrail_k8s_metadata_cache_pods', help: 'Pods held in the metadata cache (including recently deleted).', labelNames: ['processor'], registers }),
  lookups: new Counter({ name: 'ktrail_k8s_metadata_lookups_total', help: 'Cache lookups by result (hit, miss, negative_hit).', labelNames: ['processor', 'result'], registers }),
  apiRequests: new Counter({ name: 'ktrail_k8s_metadata_api_requests_total', help: 'Kubernetes API requests made by the cache (list, watch, get).', labelNames: ['processor', 'verb'], registers }),
  enrichFailures: new Counter({ name: 'ktrail_k8s_metadata_enrich_failures_total', help: 'Records passed on without enrichment, by reason (timeout, api_error, not_found).', labelNames: ['processor', 'reason'], registers }),
}));
