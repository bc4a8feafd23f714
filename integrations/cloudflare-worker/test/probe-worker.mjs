/**
 * Runs `src/verify.js` on inputs the tests choose, in workerd, so that
 * tests/worker/ of the repository can hold it against the Cursor's Python
 * verifier (never deployed).
 *
 *   POST /standard-key  {"secret": "..."}
 *     -> {"hex": "<key bytes>"} | {"config_error": "..."}
 *   POST /verify        {"secrets": [...], "headers": {...}, "body": "<base64>",
 *                        "acceptLegacy": false, "now": 1764000000}
 *     -> {"ok": true, "webhookId": ...} | {"ok": false, "reason": "..."}
 *        | {"config_error": "..."}
 */

import { ConfigError, standardKeyBytes, verifyWebhook } from "../src/verify.js";

const probes = {
  "/standard-key": ({ secret }) => ({ hex: toHex(standardKeyBytes(secret)) }),
  "/verify": ({ secrets, headers, body, acceptLegacy, now }) =>
    verifyWebhook({
      headers: new Headers(headers),
      body: Uint8Array.from(atob(body), (c) => c.charCodeAt(0)),
      secrets,
      acceptLegacy,
      now,
    }),
};

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export default {
  async fetch(request) {
    const probe = probes[new URL(request.url).pathname];
    if (probe === undefined || request.method !== "POST") return new Response(null, { status: 404 });
    try {
      return Response.json(await probe(await request.json()));
    } catch (error) {
      if (error instanceof ConfigError) return Response.json({ config_error: error.message });
      throw error;
    }
  },
};
