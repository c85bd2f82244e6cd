import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEsBulkServer, type EsBulkServer } from '../helpers/es-bulk-server.ts';
import { cleanUpScenarios, expectOnlyTheDeletedGap, ktrailVerifyAsync, runScenario } from './scenario.ts';

/**
 * `ktrail verify` against the elasticsearch output (the `_bulk` emulation,
 * with `_mget`): manifests are documents in the manifest index naming the
 * data indices; records are fetched by id and their `_source` hashed. After
 * the run it passes with exactly the one gap; an edited document, a
 * deleted document and a removed manifest each make it fail and say so.
 */

cleanUpScenarios();

let es: EsBulkServer;
beforeAll(async () => {
  es = await startEsBulkServer();
});
afterAll(async () => {
  await es?.close();
});

const sink = () => `{ type: elasticsearch, url: "${es.url}", batch: { max_records: 200, flush_interval: 50ms } }`;

describe('ktrail verify against the elasticsearch output', () => {
  it('after rotations, a deleted-unread backup and 3 SIGKILLs: passes with exactly that gap; fails on an edited document, a deleted document, a removed manifest', async () => {
    const sc = await runScenario(sink);
    const docs = es.allDocs();
    const data = docs.filter((d) => d.index !== 'ktrail-manifests');
    expect(new Set(data.map((d) => d.id))).toEqual(new Set(sc.expectedIds));
    expect(docs.filter((d) => d.index === 'ktrail-manifests').length).toBeGreaterThanOrEqual(2);

    const good = await ktrailVerifyAsync(sc.config);
    expectOnlyTheDeletedGap(good, sc);

    // One document edited: fails on its hash, naming the document.
    const victim = data[Math.floor(data.length / 2)]!;
    es.replaceDoc(victim.index, victim.id, { ...victim.source, verb: 'delete' });
    const edited = await ktrailVerifyAsync(sc.config);
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain(`(${victim.id}) altered (SHA-256 differs from the manifest; at ${victim.index}/${victim.id})`);
    es.replaceDoc(victim.index, victim.id, victim.source);
    expect((await ktrailVerifyAsync(sc.config)).status).toBe(0);

    // One document deleted: fails, naming its entry and source range.
    es.deleteDoc(victim.index, victim.id);
    const missing = await ktrailVerifyAsync(sc.config);
    expect(missing.status).toBe(1);
    expect(missing.stdout).toMatch(new RegExp(`FAIL audit:\\S+ entry #\\d+, \\S+ bytes \\d+\\.\\.\\d+ \\(fingerprint [0-9a-f]+\\), batch \\d+: record \\d+ \\(${victim.id}\\) missing`));

    // One manifest removed: fails on the chain.
    expect(es.deleteDoc('ktrail-manifests', 'ktrail-manifest:sink:2')).toBe(true);
    const removed = await ktrailVerifyAsync(sc.config);
    expect(removed.status).toBe(1);
    expect(removed.stdout).toContain('manifests #2..#2 are missing');
  });
});
