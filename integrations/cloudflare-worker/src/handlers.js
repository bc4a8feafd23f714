/**
 * What the Worker does with a webhook it accepted: the place to merge your
 * own handling (import the Gold into D1, start a Workflow, notify a team...).
 *
 * Each function is called after the signature verified and the body parsed;
 * `onIngestComplete` only once the Gold was streamed from R2 and its SHA-256
 * matched the webhook. With the `HOOK_SEEN` KV namespace bound, a
 * `webhook-id` is handled once: replays are answered 204 without calling
 * these again (KV is eventually consistent, so two deliveries at the very
 * same moment may both get through: keep the handling idempotent, keyed on
 * `event.run_id`).
 *
 * Return normally to answer 204. Throw to answer 500: the Cursor retries
 * later with the same `webhook-id`, which is not marked as seen.
 *
 * Instead of editing this file you can pass your own functions:
 * `createWorker({ onIngestComplete, onProcessingError })` or
 * `handleHook(request, env, ctx, handlers)` in `index.js`.
 */

import { log } from "./log.js";

/**
 * An `ingest_complete` webhook whose Gold checked out.
 *
 * @param {object} args
 * @param {object} args.event the parsed body: `run_id`, `status`, `completed_at`, `result`, `metadata`
 * @param {import("./hooks.js").Gold} args.gold the checked Gold: `key`, `sha256`,
 *   `size`, the R2 `object` (metadata), and `await gold.bytes()` / `await gold.json()`,
 *   which read it from R2 only when called (a Gold can be large; a Worker has
 *   128 MB) and fail if it changed since the check
 * @param {string | null} args.webhookId `null` for a legacy-only request
 * @param {object} args.env the Worker's bindings
 * @param {ExecutionContext} args.ctx use `ctx.waitUntil` for work after the answer
 */
export async function onIngestComplete({ event, gold, webhookId }) {
  log("hook.ingest_complete", {
    webhook_id: webhookId,
    run_id: event.run_id,
    status: event.status,
    file_path: gold.key,
    sha256: gold.sha256,
    size: gold.size,
  });
}

/**
 * A `processing_error` webhook: a job was given up after its last attempt.
 *
 * @param {object} args
 * @param {object} args.event the parsed body: `run_id`, `error_type`, `error_message`, `occurred_at`, `context`
 * @param {string | null} args.webhookId `null` for a legacy-only request
 * @param {object} args.env the Worker's bindings
 * @param {ExecutionContext} args.ctx
 */
export async function onProcessingError({ event, webhookId }) {
  log("hook.processing_error", {
    webhook_id: webhookId,
    run_id: event.run_id,
    error_type: event.error_type,
  });
}
