import fs from 'node:fs';
import path from 'node:path';
import type { ServiceConfig } from './schema.ts';

/**
 * Can this process create and write files in `dir` (creating it and its
 * parents when missing, as the agent does)? Undefined when it can, else why
 * not. The first ancestor that exists decides: it must be a directory this
 * process may write and enter. A parent that is a regular file fails for
 * every user, root included; a read-only mode fails for everyone but root
 * (root is checked with access(2) too, which only a read-only mount refuses).
 */
export function dirWriteProblem(dir: string): string | undefined {
  const abs = path.resolve(dir);
  let cur = abs;
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(cur);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') return `${parentFile(cur) ?? cur} is not a directory, so ${abs} cannot be created`;
      if (code !== 'ENOENT') return `cannot look at ${cur}: ${(err as Error).message}`;
    }
    if (st !== undefined) {
      if (!st.isDirectory()) return cur === abs ? `${abs} is not a directory` : `${cur} is a file, not a directory, so ${abs} cannot be created`;
      try {
        fs.accessSync(cur, fs.constants.W_OK | fs.constants.X_OK);
      } catch {
        return cur === abs ? `${abs} is not writable by this user` : `${cur} is not writable by this user, so ${abs} cannot be created`;
      }
      return undefined;
    }
    const up = path.dirname(cur);
    if (up === cur) return `no existing parent directory of ${abs}`;
    cur = up;
  }
}

/** The nearest ancestor of `p` that exists and is not a directory. */
function parentFile(p: string): string | undefined {
  for (let cur = path.dirname(p); cur !== path.dirname(cur); cur = path.dirname(cur)) {
    try {
      if (!fs.statSync(cur).isDirectory()) return cur;
    } catch {
      // Does not exist or cannot be looked at: keep going up.
    }
  }
  return undefined;
}

/** A file that will be appended to: its directory must be writable, and the file, when it exists, a writable regular file. */
export function fileWriteProblem(file: string): string | undefined {
  const abs = path.resolve(file);
  const dirProblem = dirWriteProblem(path.dirname(abs));
  if (dirProblem !== undefined) return dirProblem;
  try {
    const st = fs.statSync(abs);
    if (st.isDirectory()) return `${abs} is a directory`;
    if (st.isFile()) fs.accessSync(abs, fs.constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    return `${abs} is not writable by this user`;
  }
  return undefined;
}

/** `ktrail check` warnings about the service section: the state directory (spool, checkpoints) must be writable. */
export function serviceWarnings(service: ServiceConfig): string[] {
  const problem = dirWriteProblem(service.state_dir);
  return problem === undefined ? [] : [`service.state_dir: the spool and checkpoints cannot be written: ${problem}`];
}
