import { Counter } from 'prom-client';
import { pluginMetrics } from '../../telemetry/metrics.ts';

/** The series only the `elasticsearch` plugin exports (docs/metrics.md lists them with the rest). */
export const elasticsearchMetrics = pluginMetrics('elasticsearch', (registers) => ({
  duplicates: new Counter({ name: 'ktrail_output_duplicates_total', help: 'Records the destination already had (Elasticsearch 409 on create): a replay made harmless by the record id.', labelNames: ['output'], registers }),
}));
