/** Test-side name for the lumberjack-faithful writer; the code lives in src/testing so scripts can use it. */
export * from '../../src/testing/lumberjack.ts';
