import type { Plugin } from './plugin.ts';
import { auditFileInput } from './inputs/audit-file/plugin.ts';
import { k8sEventsInput } from './inputs/k8s-events/plugin.ts';
import { fileOutput } from './outputs/file/file.ts';
import { stdoutOutput } from './outputs/stdout/stdout.ts';
import { elasticsearchOutput } from './outputs/elasticsearch/elasticsearch.ts';
import { s3Output } from './outputs/s3/s3.ts';
import { httpOutput } from './outputs/http/http.ts';
import { filterProcessor } from './processors/filter/filter.ts';
import { redactProcessor } from './processors/redact/redact.ts';
import { k8sMetadataProcessor } from './processors/k8s-metadata/k8s-metadata.ts';

/**
 * Every plugin ktrail has, imported explicitly. A `type:` in the config that
 * is not listed here fails validation with the list of known types.
 */
export const plugins: readonly Plugin[] = [
  // inputs
  auditFileInput,
  k8sEventsInput,
  // processors
  filterProcessor,
  redactProcessor,
  k8sMetadataProcessor,
  // outputs
  stdoutOutput,
  fileOutput,
  elasticsearchOutput,
  s3Output,
  httpOutput,
] as Plugin[];
