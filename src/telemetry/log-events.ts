/**
 * The log lines a plugin writes that an operator may act on — a gap, a file
 * truncated, a destination refusing data — named. Each carries
 * `event: "<plugin>.<name>"` beside its message, so that a log pipeline can
 * match it without parsing prose, and the name stays when the wording
 * changes. A plugin declares its events once, beside its metrics (its
 * `telemetry.ts`), and names them in its definition; docs/logs.md lists them
 * (generated, like the metrics).
 */

export type LogEventLevel = 'info' | 'warn' | 'error';

export interface LogEventSpec {
  level: LogEventLevel;
  /** What happened and what to do about it, for the docs. */
  help: string;
}

export interface LogEventCatalog {
  plugin: string;
  events: Readonly<Record<string, LogEventSpec>>;
}

export type LogEventNames<E> = { readonly [K in keyof E]: string };

/**
 * `names.gap` is `"<plugin>.gap"`; `catalog` is what the plugin definition
 * names (`logEvents`) for the docs.
 */
export function logEvents<const E extends Record<string, LogEventSpec>>(plugin: string, events: E): { names: LogEventNames<E>; catalog: LogEventCatalog } {
  const names = Object.fromEntries(Object.keys(events).map((k) => [k, `${plugin}.${k}`])) as LogEventNames<E>;
  return { names, catalog: { plugin, events } };
}
