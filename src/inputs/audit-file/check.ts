import path from 'node:path';
import type { CheckFindings } from '../../plugin.ts';
import { compilePaths, Scanner } from './scan.ts';

/**
 * `ktrail check` for audit_file: the files each `paths` entry covers now, by
 * the input's own scanner (so the listing is exactly what `run` would read),
 * and a warning for an entry that matches nothing — a typo in the directory
 * or the pattern otherwise looks the same as an apiserver that has not
 * written its first line yet.
 */
export async function inspectAuditFile(cfg: { paths: readonly string[]; exclude: readonly string[] }): Promise<CheckFindings> {
  const warnings: string[] = [];
  const notes: string[] = [];
  for (const [i, pattern] of cfg.paths.entries()) {
    const scan = await new Scanner(compilePaths([pattern], cfg.exclude), { wantLineEnd: () => false }).scan();
    const files = scan.files.map((f) => f.path).sort();
    const where = `paths[${i}] ${JSON.stringify(pattern)}`;
    for (const e of scan.errors) warnings.push(`${where}: cannot read ${e.path}: ${e.error.code ?? e.error.message}`);
    if (files.length === 0) {
      const missing = scan.missingDirs.length > 0 ? `: directory ${scan.missingDirs.join(', ')} does not exist` : '';
      warnings.push(`${where} matches no file${missing} (the input waits for one; check the pattern if the apiserver already writes its audit log)`);
      continue;
    }
    const dir = path.dirname(files[0]!);
    const sameDir = files.every((f) => path.dirname(f) === dir);
    const names = sameDir ? files.map((f) => path.basename(f)) : files;
    notes.push(`${where} covers ${files.length} file${files.length === 1 ? '' : 's'}${sameDir ? ` in ${dir}` : ''}: ${names.join(', ')}`);
  }
  return { warnings, notes };
}
