import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Crash and rotation tests start processes and servers; two cores here.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
