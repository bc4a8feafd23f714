/**
 * Receiving the atlasreg-cursor webhooks: `handleHook` and `createWorker`.
 * `index.js` is the deployable Worker built from them; an existing Worker
 * imports `handleHook` from here and calls it first in its own `fetch`.
 *
 * Answers: 204 accepted (a replayed `webhook-id` too, handled once); 400 a
 * signed body that is not the expected JSON; 401 missing, bad or stale
 * signature; 404 other paths; 405 not a POST; 413 body over 1 MiB; 422
 * `result.file_path` is not a Gold key of the run, or the Gold is missing or
 * its SHA-256 differs (not retried by the Cursor); 500 a misconfigured
 * Worker or a failing handler, 503 R2 or KV failing (both retried by the
 * Cursor). Error bodies are `{"error": "<reason>"}`.
 *
 * Neither the request body nor the Gold is buffered beyond what is needed:
 * the body is read up to the limit, the Gold is hashed as it streams from R2
 * and read again only when a handler asks for its bytes.
 */

import * as defaultHandlers from "./handlers.js";
import { log } from "./log.js";
import { acceptLegacyFromEnv, ConfigError, secretsFromEnv, verifyWebhook } from "./verify.js";

export const HOOK_PATHS = {
  "/api/v1/hooks/ingest-complete": "ingest_complete",
  "/api/v1/hooks/processing-error": "processing_error",
};
export const MAX_BODY_BYTES = 1024 * 1024;
/** How long a handled `webhook-id` is remembered in `HOOK_SEEN`. */
export const SEEN_TTL_SECONDS = 7 * 24 * 3600;

const SHA256_RE = /^[0-9a-f]{64}$/;
/** The Cursor's Gold keys: `gold/<YYYY-MM-DD>/<run_id>.json` or `..._reprocessed.json`. */
const GOLD_KEY_RE = /^gold\/([0-9]{4})-([0-9]{2})-([0-9]{2})\/((?:run|reprocess)_[0-9a-f]{12})(?:_reprocessed)?\.json$/;

/**
 * Answer a webhook request, or return `null` when the path is not a hook
 * path (so an existing Worker can route everything else itself).
 *
 * @param {Request} request
 * @param {object} env the bindings listed above
 * @param {ExecutionContext} ctx
 * @param {{onIngestComplete: Function, onProcessingError: Function}} [handlers] see `handlers.js`
 * @returns {Promise<Response | null>}
 */
export async function handleHook(request, env, ctx, handlers = defaultHandlers) {
  const expected = HOOK_PATHS[new URL(request.url).pathname];
  if (expected === undefined) return null;
  if (request.method !== "POST") {
    return problem(405, "use POST", { Allow: "POST" });
  }
  const tooLarge = `the body is larger than ${MAX_BODY_BYTES} bytes`;
  if (Number(request.headers.get("content-length") ?? 0) > MAX_BODY_BYTES) {
    return problem(413, tooLarge);
  }
  const body = await readBody(request, MAX_BODY_BYTES);
  if (body === null) return problem(413, tooLarge);

  let verdict;
  try {
    verdict = await verifyWebhook({
      headers: request.headers,
      body,
      secrets: secretsFromEnv(env),
      acceptLegacy: acceptLegacyFromEnv(env),
    });
  } catch (error) {
    if (error instanceof ConfigError) return misconfigured(error.message);
    throw error;
  }
  if (!verdict.ok) {
    log("hook.rejected", {
      path: new URL(request.url).pathname,
      webhook_id: request.headers.get("webhook-id")?.slice(0, 256) ?? null,
      reason: verdict.reason,
    });
    return problem(401, verdict.reason);
  }

  const event = parseJson(body);
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return problem(400, "the body is not a JSON object");
  }
  if (event.event_type !== expected) {
    return problem(400, `event_type must be "${expected}" on this path`);
  }

  const seenKey = verdict.webhookId && env.HOOK_SEEN ? `webhook-id:${verdict.webhookId}` : null;
  if (seenKey) {
    let seen;
    try {
      seen = await env.HOOK_SEEN.get(seenKey);
    } catch (error) {
      return problem(503, `HOOK_SEEN is not answering: ${error}`);
    }
    if (seen !== null) {
      log("hook.duplicate", { webhook_id: verdict.webhookId, run_id: event.run_id });
      return new Response(null, { status: 204, headers: { "X-Hook-Duplicate": "true" } });
    }
  }

  const args = { event, webhookId: verdict.webhookId, env, ctx };
  if (expected === "ingest_complete") {
    const checked = await checkGold(event, env);
    if (checked instanceof Response) return checked;
    args.gold = checked;
  }
  try {
    if (expected === "ingest_complete") await handlers.onIngestComplete(args);
    else await handlers.onProcessingError(args);
  } catch (error) {
    log("hook.handler_failed", { webhook_id: verdict.webhookId, error: String(error) });
    return problem(500, "the webhook handler failed; it will be retried");
  }

  if (seenKey) {
    const record = JSON.stringify({ event_type: expected, run_id: event.run_id, at: Date.now() });
    try {
      await env.HOOK_SEEN.put(seenKey, record, { expirationTtl: SEEN_TTL_SECONDS });
    } catch (error) {
      log("hook.seen_not_recorded", { webhook_id: verdict.webhookId, error: String(error) });
    }
  }
  return new Response(null, { status: 204 });
}

/**
 * Check `result.file_path` is a Gold key of the run, then stream it from
 * `GOLD` through SHA-256 and compare with `result.sha256`.
 *
 * @returns {Promise<Response | Gold>} the Gold, or the error response to send
 */
async function checkGold(event, env) {
  const result = event.result;
  const key = result?.file_path;
  const expected = result?.sha256;
  if (typeof key !== "string" || !key || typeof expected !== "string" || !SHA256_RE.test(expected)) {
    return problem(400, "result.file_path and result.sha256 (64 lowercase hex) are required");
  }
  if (!isGoldKeyOf(key, event.run_id)) {
    log("hook.gold_key_refused", { run_id: event.run_id, file_path: key.slice(0, 256) });
    return problem(
      422,
      "result.file_path must be gold/<YYYY-MM-DD>/<run_id>.json or <run_id>_reprocessed.json of this run_id"
    );
  }
  if (!env.GOLD) return misconfigured("the R2 bucket binding GOLD is missing");
  let object;
  let actual;
  try {
    object = await env.GOLD.get(key);
    if (object !== null) actual = await sha256Hex(object.body);
  } catch (error) {
    return problem(503, `R2 is not answering: ${error}`);
  }
  if (object === null) {
    log("hook.gold_missing", { run_id: event.run_id, file_path: key });
    return problem(422, `Gold ${key} is not in the bucket`);
  }
  if (actual !== expected) {
    log("hook.gold_mismatch", { run_id: event.run_id, file_path: key, expected, actual });
    return problem(422, `Gold ${key} has SHA-256 ${actual}, the webhook says ${expected}`);
  }
  return new Gold(env.GOLD, object, actual);
}

/**
 * The Gold a handler receives. Its bytes are not held: `bytes()` and
 * `json()` read the object again from R2 (once, then kept) and check it
 * still has the SHA-256 the webhook announced.
 */
export class Gold {
  /**
   * @param {R2Bucket} bucket
   * @param {R2Object} object the object whose body was hashed
   * @param {string} sha256 its SHA-256, hex
   */
  constructor(bucket, object, sha256) {
    this.key = object.key;
    this.sha256 = sha256;
    this.size = object.size;
    this.object = object;
    this._bucket = bucket;
    this._bytes = null;
  }

  /**
   * The Gold's bytes, exactly those whose SHA-256 matched.
   *
   * @returns {Promise<Uint8Array>}
   * @throws {Error} when the object is gone or changed since the check (the
   *   handler fails: 500, and the Cursor's retry checks the Gold again).
   */
  bytes() {
    this._bytes ??= this._read();
    return this._bytes;
  }

  /** The Gold document, parsed. */
  async json() {
    return JSON.parse(new TextDecoder().decode(await this.bytes()));
  }

  async _read() {
    const object = await this._bucket.get(this.key);
    if (object === null) throw new Error(`Gold ${this.key} disappeared from the bucket`);
    const bytes = new Uint8Array(await object.arrayBuffer());
    const actual = hex(await crypto.subtle.digest("SHA-256", bytes));
    if (actual !== this.sha256) throw new Error(`Gold ${this.key} changed after it was checked`);
    return bytes;
  }
}

/** Whether *key* is `gold/<real date>/<runId>[_reprocessed].json`. */
function isGoldKeyOf(key, runId) {
  const match = GOLD_KEY_RE.exec(key);
  if (match === null || match[4] !== runId) return false;
  const [year, month, day] = match.slice(1, 4).map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return (
    date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day
  );
}

/** SHA-256 of a stream as it flows (`crypto.DigestStream`, workerd), hex. */
async function sha256Hex(stream) {
  const digest = new crypto.DigestStream("SHA-256");
  await stream.pipeTo(digest);
  return hex(await digest.digest);
}

/**
 * Read a request body of at most *limit* bytes, whether or not it says its
 * length; `null` (and the rest left unread) as soon as it is longer.
 */
async function readBody(request, limit) {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * A Worker (`{ fetch }`) answering the hook paths with *handlers* and 404
 * everywhere else.
 */
export function createWorker(handlers = defaultHandlers) {
  return {
    async fetch(request, env, ctx) {
      return (await handleHook(request, env, ctx, handlers)) ?? problem(404, "not found");
    },
  };
}

function parseJson(bytes) {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

function misconfigured(reason) {
  log("hook.misconfigured", { reason });
  return problem(500, `the Worker is misconfigured: ${reason}`);
}

function problem(status, reason, headers = {}) {
  return Response.json({ error: reason }, { status, headers });
}
