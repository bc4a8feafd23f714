/**
 * Serve the Worker from workerd (through Miniflare) on loopback ports, for
 * the pytest suite in tests/worker/ of the repository.
 *
 * One process runs one workerd with several copies of the Worker, each with
 * its own bindings and its own HTTP port; they share one R2 bucket.
 *
 * Protocol: JSON, one object per line.
 *
 *   stdin, first line (the configuration):
 *     {"main": "src/index.js", "compatibilityDate": "2026-04-01",
 *      "workers": [{"name": "main", "bindings": {"HOOK_HMAC_SECRET": "..."},
 *                   "kv": true, "main": "test/failing-worker.mjs"}]}
 *     a copy's own `main` (optional) replaces the shared one; `bindings`
 *     values may be any JSON (a TOML boolean in `[vars]` arrives as a
 *     boolean); `kv` binds a fresh KV namespace as HOOK_SEEN; every copy
 *     binds the shared bucket as GOLD.
 *   stdout, once workerd listens:
 *     {"type": "ready", "urls": {"main": "http://127.0.0.1:PORT"}}
 *   stdin, then: commands, each answered by a reply with the same id
 *     {"id": 1, "op": "put", "key": "gold/...", "base64": "..."}
 *     {"id": 2, "op": "delete", "key": "gold/..."}
 *     {"id": 3, "op": "kv_get", "worker": "main", "key": "webhook-id:..."}
 *     -> {"type": "reply", "id": 1, "ok": true, "value": ...}
 *     -> {"type": "reply", "id": 1, "ok": false, "error": "..."}
 *   stdout, at any time: what the Worker wrote (console.log and friends)
 *     {"type": "log", "stream": "stdout" | "stderr", "line": "..."}
 *
 * End of stdin (or SIGTERM) disposes of Miniflare and exits.
 */

import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n");

function pipeLines(stream, name) {
  createInterface({ input: stream }).on("line", (line) => emit({ type: "log", stream: name, line }));
}

function workerOptions(config, worker) {
  return {
    name: worker.name,
    modules: true,
    modulesRoot: root,
    modulesRules: [{ type: "ESModule", include: ["**/*.js", "**/*.mjs"] }],
    scriptPath: path.resolve(root, worker.main ?? config.main),
    compatibilityDate: config.compatibilityDate,
    compatibilityFlags: config.compatibilityFlags ?? [],
    bindings: worker.bindings ?? {},
    r2Buckets: { GOLD: "gold" },
    kvNamespaces: worker.kv ? { HOOK_SEEN: `hook-seen-${worker.name}` } : {},
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

async function main() {
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) return;
  const config = JSON.parse(first.value);
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    inspectorPort: undefined,
    handleRuntimeStdio(stdout, stderr) {
      pipeLines(stdout, "stdout");
      pipeLines(stderr, "stderr");
    },
    workers: config.workers.map((w) => workerOptions(config, w)),
  });
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    await mf.dispose();
  };
  process.on("SIGTERM", () => dispose().finally(() => process.exit(0)));

  await mf.ready;
  const urls = {};
  for (const w of config.workers) urls[w.name] = (await mf.unsafeGetDirectURL(w.name)).origin;
  emit({ type: "ready", urls });

  const bucket = await mf.getR2Bucket("GOLD", config.workers[0].name);
  const commands = {
    async put({ key, base64 }) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const object = await bucket.put(key, bytes);
      return { key: object.key, size: object.size };
    },
    async delete({ key }) {
      await bucket.delete(key);
      return null;
    },
    async kv_get({ worker, key }) {
      return (await mf.getKVNamespace("HOOK_SEEN", worker)).get(key);
    },
  };
  for (let next = await lines.next(); !next.done; next = await lines.next()) {
    const command = JSON.parse(next.value);
    try {
      const run = commands[command.op];
      if (!run) throw new Error(`unknown op ${command.op}`);
      emit({ type: "reply", id: command.id, ok: true, value: await run(command) });
    } catch (error) {
      emit({ type: "reply", id: command.id, ok: false, error: String(error) });
    }
  }
  await dispose();
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
