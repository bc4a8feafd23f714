/**
 * The Worker's log lines: one JSON object per line, which Workers Logs and
 * `wrangler tail` show. `hooks.js` and `handlers.js` both write through it,
 * so `handlers.js` can be rewritten freely.
 */

/**
 * Write one log line: `{"event": name, ...fields}`.
 *
 * @param {string} name the event, e.g. `hook.ingest_complete`
 * @param {Record<string, unknown>} fields
 */
export function log(name, fields) {
  console.log(JSON.stringify({ event: name, ...fields }));
}
