/** Test-side name for the lumberjack-faithful writer (test/generators/lumberjack.ts, shared with scripts and benchmarks). */
export * from '../generators/lumberjack.ts';
