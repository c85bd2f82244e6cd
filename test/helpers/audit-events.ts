/** Test-side name for the audit event generator; the code lives in src/testing so scripts and benchmarks can use it. */
export * from '../../src/testing/audit-gen.ts';
