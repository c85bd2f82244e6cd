/** Test-side name for the audit event generator (test/generators/audit-gen.ts, shared with scripts and benchmarks). */
export * from '../generators/audit-gen.ts';
