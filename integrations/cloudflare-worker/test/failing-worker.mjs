/**
 * The Worker of `src/` with faults switched on from the tests, for
 * tests/worker/ of the repository (never deployed).
 *
 * It is `createWorker()` with handlers that wrap the default ones, over
 * bindings that wrap the real R2 bucket and KV namespace. A fault is on
 * while a marker object is in the `GOLD` bucket:
 *
 *   faults/handler/<run_id>       the handler throws (before it logs)
 *   faults/gold-changes/<run_id>  the handler replaces the Gold in R2, then
 *                                 reads it with `gold.json()`
 *   faults/r2-get/<gold key>      `GOLD.get` of that key throws
 *   faults/r2-body/<gold key>     the body of that key fails after 16 bytes
 *   faults/r2-buffer/<gold key>   the first `GOLD.get` of that key in a request
 *                                 gives an object whose `arrayBuffer()`,
 *                                 `bytes()`, `text()`, `json()` and `blob()`
 *                                 throw: only its `body` stream can be read, so
 *                                 the Gold check must hash it as it streams
 *   faults/kv/<webhook-id>        `HOOK_SEEN.get` of that id throws
 *
 * Once an `ingest_complete` handler ran, it also logs what `gold.json()`
 * read (`test.gold_read`), so the tests see the Gold reach the handler;
 * `test.stream_only` says an `r2-buffer` fault was applied.
 */

import * as handlers from "../src/handlers.js";
import { createWorker } from "../src/hooks.js";
import { log } from "../src/log.js";

const FAULTS = "faults/";

async function marked(bucket, kind, name) {
  return (await bucket.head(`${FAULTS}${kind}/${name}`)) !== null;
}

async function beforeHandler({ event, env, gold }) {
  if (await marked(env.GOLD, "handler", event.run_id)) {
    throw new Error(`injected handler failure for ${event.run_id}`);
  }
  if (gold && (await marked(env.GOLD, "gold-changes", event.run_id))) {
    await env.GOLD.put(gold.key, new TextEncoder().encode('{"replaced": true}'));
  }
}

const flaky = {
  async onIngestComplete(args) {
    await beforeHandler(args);
    const document = await args.gold.json();
    log("test.gold_read", {
      run_id: args.event.run_id,
      gold_run_id: document.metadata?.run_id ?? null,
      bytes: (await args.gold.bytes()).length,
    });
    return handlers.onIngestComplete(args);
  },
  async onProcessingError(args) {
    await beforeHandler(args);
    return handlers.onProcessingError(args);
  },
};

/** A stream of *body* that errors once 16 bytes went through. */
function breaking(body) {
  let passed = 0;
  return body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        passed += chunk.byteLength;
        if (passed > 16) controller.error(new Error("injected R2 read failure"));
        else controller.enqueue(chunk);
      },
    })
  );
}

const BUFFERED_READS = new Set(["arrayBuffer", "bytes", "text", "json", "blob"]);

/** *object* with its buffered reads failing; its `body` and metadata still work. */
function streamOnly(object) {
  return new Proxy(object, {
    get(target, name) {
      if (BUFFERED_READS.has(name)) {
        return async () => {
          throw new Error(`injected: ${String(name)}() of the checked Gold (stream it instead)`);
        };
      }
      const value = Reflect.get(target, name);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function faultyBucket(bucket) {
  const got = new Set();
  return {
    head: (key) => bucket.head(key),
    put: (...args) => bucket.put(...args),
    delete: (key) => bucket.delete(key),
    async get(key, options) {
      if (await marked(bucket, "r2-get", key)) throw new Error("injected R2 failure");
      const object = await bucket.get(key, options);
      const first = !got.has(key);
      got.add(key);
      if (object !== null && first && (await marked(bucket, "r2-buffer", key))) {
        log("test.stream_only", { file_path: key });
        return streamOnly(object);
      }
      if (object === null || !(await marked(bucket, "r2-body", key))) return object;
      const body = breaking(object.body);
      return {
        key: object.key,
        size: object.size,
        etag: object.etag,
        body,
        arrayBuffer: () => new Response(body).arrayBuffer(),
      };
    },
  };
}

function faultyKv(kv, bucket) {
  return {
    async get(key, options) {
      const id = key.slice(key.indexOf(":") + 1);
      if (await marked(bucket, "kv", id)) throw new Error("injected KV failure");
      return kv.get(key, options);
    },
    put: (...args) => kv.put(...args),
  };
}

const worker = createWorker(flaky);

export default {
  fetch(request, env, ctx) {
    const faulty = { ...env, GOLD: faultyBucket(env.GOLD) };
    if (env.HOOK_SEEN) faulty.HOOK_SEEN = faultyKv(env.HOOK_SEEN, env.GOLD);
    return worker.fetch(request, faulty, ctx);
  },
};
