#!/usr/bin/env node
// Fills NODE_COMPILE_CACHE with every ktrail module, so that the first start of
// a fresh container already skips parsing and type stripping. The image runs it
// at build time (Dockerfile); elsewhere the first real start fills the cache.
import fs from 'node:fs';
import path from 'node:path';
import { constants, enableCompileCache, flushCompileCache } from 'node:module';
import { pathToFileURL } from 'node:url';

const dir = process.env.NODE_COMPILE_CACHE;
if (!dir) {
  process.stderr.write('warm-compile-cache: set NODE_COMPILE_CACHE to the cache directory\n');
  process.exit(2);
}
const { status, message } = enableCompileCache(dir);
const src = path.join(import.meta.dirname, '..', 'src');
// src/testing holds the test and bench generators; the agent never loads them.
const files = fs
  .readdirSync(src, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts') && !f.startsWith(`testing${path.sep}`))
  .sort();
for (const f of files) await import(pathToFileURL(path.join(src, f)).href);
// Third-party modules the plugins load lazily.
for (const m of ['@kubernetes/client-node', '@aws-sdk/credential-providers', '@smithy/signature-v4', 'undici', 'chokidar', 'pino-pretty']) await import(m);
flushCompileCache();
process.stdout.write(`compile cache ${dir}: ${files.length} modules (${Object.keys(constants.compileCacheStatus).find((k) => constants.compileCacheStatus[k] === status)}${message ? `: ${message}` : ''})\n`);
