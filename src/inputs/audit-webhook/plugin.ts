import { z } from 'zod';
import { duration, size } from '../../config/units.ts';
import type { InputPlugin } from '../../plugin.ts';
import { AuditWebhookInput } from './input.ts';
import { auditWebhookLogEvents, auditWebhookMetrics } from './telemetry.ts';

/**
 * `audit_webhook`: an HTTPS server for kube-apiserver's audit webhook backend
 * (`--audit-webhook-config-file`). Each POSTed `audit.k8s.io/v1` EventList is
 * committed to the spool with the same record ids as `audit_file`, and answered
 * 2xx only after the commit. See docs/inputs/audit_webhook.md.
 */
const MiB = 1024 * 1024;

const tls = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Serve HTTPS. `false` (a plaintext listener) is meant for local tests only and must be set explicitly.'),
    cert_file: z.string().min(1).optional().describe('PEM serving certificate (chain). Re-read when its mtime changes (checked every `reload_interval`).'),
    key_file: z.string().min(1).optional().describe('PEM private key of the serving certificate. Re-read with `cert_file`.'),
    client_ca_file: z
      .string()
      .min(1)
      .optional()
      .describe("PEM CA bundle for client certificates (mutual TLS): the CA of the apiserver's client certificate in its webhook kubeconfig. A request without a certificate signed by it is answered 403."),
    reload_interval: duration()
      .refine((v) => v >= 10, 'must be at least 10ms')
      .default(10_000)
      .describe('How often the certificate, key, client CA and token files are checked for changes.'),
  })
  .superRefine((t, ctx) => {
    if (!t.enabled) return;
    if (t.cert_file === undefined) ctx.addIssue({ code: 'custom', path: ['cert_file'], message: 'required when tls.enabled is true (set tls.enabled: false for a plaintext listener in local tests)' });
    if (t.key_file === undefined) ctx.addIssue({ code: 'custom', path: ['key_file'], message: 'required when tls.enabled is true (set tls.enabled: false for a plaintext listener in local tests)' });
  });

// The loader extends this object with the common keys (zod keeps the refinement below).
const schema = z.strictObject({
  address: z.string().min(1).default('0.0.0.0').describe('Address to listen on.'),
  port: z.int().min(0).max(65535).default(8443).describe('Port to listen on (0: any free port; the bound port is logged as `audit webhook listening`).'),
  path: z
    .string()
    .startsWith('/')
    .default('/')
    .describe('Path prefix accepted for POSTs (the path of `clusters[].cluster.server` in the webhook kubeconfig); `/` accepts any path. Other paths get 404, other methods 405.'),
  tls: tls.default({ enabled: true, reload_interval: 10_000 }).describe('TLS of the listener.'),
  bearer_token_file: z
    .string()
    .min(1)
    .optional()
    .describe('File holding the bearer token clients must send (`Authorization: Bearer <token>`, the `users[].user.token` of the webhook kubeconfig); compared in constant time, re-read when it changes, never logged. A missing or wrong token is answered 401.'),
  max_body_bytes: size()
    .refine((v) => v >= 1024, 'must be at least 1KiB')
    .default(64 * MiB)
    .describe('Largest request body accepted; a larger one is answered 413 (the apiserver drops it after its retries). 64MiB holds 400 RequestResponse events of about 160KiB each.'),
  max_concurrent_requests: z.int().min(1).max(10_000).default(32).describe('Requests handled at once; more are answered 429 with Retry-After.'),
  request_timeout: duration()
    .refine((v) => v >= 100, 'must be at least 100ms')
    .default(25_000)
    .describe("Longest time from a request's start to its answer: the body must arrive within it, and a commit that processors keep from finishing by then is answered 503 with Retry-After. Below the apiserver's 30s deadline."),
  retry_after: duration()
    .refine((v) => v >= 1000, 'must be at least 1s')
    .default(5000)
    .describe('Retry-After sent with a 429/503 (rounded up to whole seconds).'),
  spool_headroom: z
    .number()
    .min(0)
    .max(0.9)
    .default(0.2)
    .describe(
      'Share of `spool.max_bytes` kept for this input: every other input sees the spool full this much earlier and pauses (`when_full: block`) or drops its newest records (`drop_newest`), while the webhook still commits. Only at the hard limit is a request answered 429 with Retry-After, at once. The reserves of all audit_webhook inputs add up (at most 0.9).',
    ),
  allow_unauthenticated: z
    .boolean()
    .default(false)
    .describe('Accept requests with neither `tls.client_ca_file` nor `bearer_token_file` configured (local tests). Without it such a config fails validation.'),
})
  // Runs even when other keys failed (`when`), so this problem is reported with theirs.
  .superRefine(
    (c, ctx) => {
      const given = c as { tls?: unknown; bearer_token_file?: unknown; allow_unauthenticated?: unknown };
      const ca = typeof given.tls === 'object' && given.tls !== null ? (given.tls as { client_ca_file?: unknown }).client_ca_file : undefined;
      if (ca !== undefined || given.bearer_token_file !== undefined || given.allow_unauthenticated === true) return;
      ctx.addIssue({
        code: 'custom',
        path: ['tls', 'client_ca_file'],
        message: 'neither tls.client_ca_file nor bearer_token_file is set, so anyone who reaches the port could write audit events',
        params: {
          fix: "set tls.client_ca_file to the CA of the apiserver's client certificate (mutual TLS) and/or bearer_token_file to a file with its token; allow_unauthenticated: true only for local tests",
        },
      });
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

export type AuditWebhookConfig = z.output<typeof schema>;

export const auditWebhookInput: InputPlugin<typeof schema> = {
  kind: 'input',
  type: 'audit_webhook',
  description: "Receives kube-apiserver's audit webhook (EventList POSTs over HTTPS) and answers 2xx after the spool commit.",
  schema,
  metrics: auditWebhookMetrics,
  logEvents: auditWebhookLogEvents,
  create: (cfg, ctx) => new AuditWebhookInput(cfg, ctx),
  spoolHeadroom: (cfg) => cfg.spool_headroom,
  inspect: (cfg) => ({
    warnings: cfg.allow_unauthenticated && cfg.tls.client_ca_file === undefined && cfg.bearer_token_file === undefined ? ['audit_webhook: allow_unauthenticated is set and neither tls.client_ca_file nor bearer_token_file: anyone who reaches the port can write audit events'] : [],
    notes: [],
  }),
};
