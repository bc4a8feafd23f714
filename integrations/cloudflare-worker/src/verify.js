/**
 * Webhook signature verification for the atlasreg-cursor webhooks, with
 * WebCrypto only (no Node APIs), so it runs in any Worker.
 *
 * Two schemes (the Cursor sends both by default):
 *
 * - Standard Webhooks v1: `webhook-id`, `webhook-timestamp` (unix seconds,
 *   1-12 ASCII digits, within TOLERANCE_SECONDS of now) and
 *   `webhook-signature`, one or more space-separated `v1,<base64>` entries
 *   (at most MAX_SIGNATURES entries in at most MAX_SIGNATURE_HEADER
 *   characters), each an HMAC-SHA256 of `${id}.${timestamp}.${rawBody}`. The
 *   Cursor's Python verifier has the same limits. The request is
 *   accepted when one entry matches one configured secret; entries of other
 *   versions, or whose signature is not the canonical base64 of 32 bytes,
 *   are skipped. A secret of the form `whsec_<base64>` (padding optional)
 *   means its base64-decoded bytes; any other secret means its UTF-8 bytes.
 * - Legacy `X-Signature`: the hex HMAC-SHA256 of the raw body keyed with the
 *   UTF-8 bytes of a configured secret string (`whsec_` included), with an
 *   optional `X-Signature-Algorithm: HMAC-SHA256`. It carries no timestamp,
 *   so a captured request can be replayed: it is checked only when
 *   `acceptLegacy` is true, and only when no `webhook-*` header is present.
 *
 * Every comparison goes through `crypto.subtle.verify`, which compares in
 * constant time. Failures return `{ ok: false, reason }`; reasons never
 * contain a secret.
 */

export const TOLERANCE_SECONDS = 300;
export const MAX_SIGNATURES = 16;
export const MAX_SIGNATURE_HEADER = 4096;
export const MAX_WEBHOOK_ID_LENGTH = 256;

const WHSEC = "whsec_";
const HMAC = { name: "HMAC", hash: "SHA-256" };
const TIMESTAMP_RE = /^[0-9]{1,12}$/;
const WHSEC_BODY_RE = /^([A-Za-z0-9+/]*)(={0,2})$/;
const SIGNATURE_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const HEX64_RE = /^[0-9a-fA-F]{64}$/;
const WEBHOOK_ID_RE = /^[\x21-\x2d\x2f-\x7e]+$/; // printable ASCII, no space, no "."
const encoder = new TextEncoder();

/** A configuration problem: the Worker cannot verify anything until it is fixed. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * Read the secrets from the Worker's environment: `HOOK_HMAC_SECRET` as it
 * is, then the comma-separated `HOOK_HMAC_ADDITIONAL_SECRETS` (each trimmed,
 * blank entries ignored), as the Cursor reads its own settings.
 *
 * @param {Record<string, unknown>} env
 * @returns {string[]}
 * @throws {ConfigError} when `HOOK_HMAC_SECRET` is missing or empty.
 */
export function secretsFromEnv(env) {
  const primary = typeof env.HOOK_HMAC_SECRET === "string" ? env.HOOK_HMAC_SECRET : "";
  if (!primary) throw new ConfigError("HOOK_HMAC_SECRET is not set");
  const extra = typeof env.HOOK_HMAC_ADDITIONAL_SECRETS === "string"
    ? env.HOOK_HMAC_ADDITIONAL_SECRETS.split(",").map((s) => s.trim()).filter(Boolean)
    : [];
  return [primary, ...extra];
}

/**
 * Read `ACCEPT_LEGACY_SIGNATURE`: `true` (a TOML boolean in `[vars]`) or
 * `"true"` switch legacy-only requests on; `false`, `"false"` or no binding
 * leave them off.
 *
 * @param {Record<string, unknown>} env
 * @returns {boolean}
 * @throws {ConfigError} for any other value (the value is not shown).
 */
export function acceptLegacyFromEnv(env) {
  const value = env.ACCEPT_LEGACY_SIGNATURE;
  if (value === undefined || value === false || value === "false") return false;
  if (value === true || value === "true") return true;
  throw new ConfigError('ACCEPT_LEGACY_SIGNATURE must be true or false (or "true" / "false")');
}

/**
 * The Standard Webhooks HMAC key bytes of *secret*.
 *
 * @param {string} secret
 * @param {number} index position of the secret, used in error messages instead of the secret
 * @returns {Uint8Array}
 * @throws {ConfigError} when a `whsec_` secret is not followed by base64 (see
 *   `decodeKeyBase64`) or gives no bytes.
 */
export function standardKeyBytes(secret, index = 0) {
  if (!secret.startsWith(WHSEC)) return encoder.encode(secret);
  const bytes = decodeKeyBase64(secret.slice(WHSEC.length));
  if (bytes === null) {
    throw new ConfigError(`secret #${index + 1}: a whsec_ secret must be followed by base64`);
  }
  if (bytes.length === 0) throw new ConfigError(`secret #${index + 1}: the whsec_ key is empty`);
  return bytes;
}

/**
 * Verify a webhook.
 *
 * @param {object} args
 * @param {Headers} args.headers the request headers
 * @param {Uint8Array} args.body the raw body bytes, exactly as received
 * @param {string[]} args.secrets configured secrets, the current one first
 * @param {boolean} [args.acceptLegacy] check `X-Signature` when no `webhook-*` header is sent
 * @param {number} [args.now] current unix time in seconds
 * @param {number} [args.toleranceSeconds]
 * @returns {Promise<{ok: true, scheme: "standard", webhookId: string, timestamp: number}
 *   | {ok: true, scheme: "legacy", webhookId: null}
 *   | {ok: false, reason: string}>}
 * @throws {ConfigError} when a configured secret is unusable.
 */
export async function verifyWebhook({
  headers,
  body,
  secrets,
  acceptLegacy = false,
  now = Date.now() / 1000,
  toleranceSeconds = TOLERANCE_SECONDS,
}) {
  if (!secrets || secrets.length === 0) throw new ConfigError("no webhook secret is configured");
  secrets.forEach(standardKeyBytes); // a broken secret fails every request, not only some
  const hasStandard = ["webhook-id", "webhook-timestamp", "webhook-signature"].some((h) =>
    headers.has(h)
  );
  if (hasStandard) return verifyStandard(headers, body, secrets, now, toleranceSeconds);
  if (headers.has("x-signature")) {
    if (!acceptLegacy) {
      return fail("only a legacy X-Signature was sent and ACCEPT_LEGACY_SIGNATURE is not true");
    }
    return verifyLegacy(headers, body, secrets);
  }
  return fail("no signature headers (webhook-id, webhook-timestamp, webhook-signature)");
}

async function verifyStandard(headers, body, secrets, now, toleranceSeconds) {
  const id = headers.get("webhook-id");
  const ts = headers.get("webhook-timestamp");
  const signature = headers.get("webhook-signature");
  if (!id || !ts || !signature) {
    return fail("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (id.length > MAX_WEBHOOK_ID_LENGTH || !WEBHOOK_ID_RE.test(id)) {
    return fail(
      `webhook-id must be 1-${MAX_WEBHOOK_ID_LENGTH} printable ASCII characters, no "." or space`
    );
  }
  if (!TIMESTAMP_RE.test(ts)) return fail("webhook-timestamp must be 1-12 ASCII digits");
  if (signature.length > MAX_SIGNATURE_HEADER) {
    return fail(`webhook-signature is longer than ${MAX_SIGNATURE_HEADER} characters`);
  }
  const entries = signature.split(" ").filter(Boolean);
  if (entries.length > MAX_SIGNATURES) return fail(`more than ${MAX_SIGNATURES} signatures`);
  const timestamp = Number(ts);
  if (Math.abs(now - timestamp) > toleranceSeconds) {
    return fail(`webhook-timestamp is more than ${toleranceSeconds} s away from now`);
  }
  const candidates = [];
  for (const entry of entries) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue; // other versions (v1a) are skipped
    const bytes = decodeSignature(entry.slice(comma + 1));
    if (bytes !== null) candidates.push(bytes);
  }
  if (candidates.length === 0) return fail("webhook-signature has no well-formed v1 signature");
  // The timestamp is signed as a plain integer ("0012" as "12"), as the
  // Standard Webhooks reference libraries and the Cursor's verifier do.
  const content = concat(encoder.encode(`${id}.${timestamp}.`), body);
  for (const [index, secret] of secrets.entries()) {
    const key = await importKey(standardKeyBytes(secret, index));
    for (const candidate of candidates) {
      if (await crypto.subtle.verify("HMAC", key, candidate, content)) {
        return { ok: true, scheme: "standard", webhookId: id, timestamp };
      }
    }
  }
  return fail("no v1 signature matches a configured secret");
}

async function verifyLegacy(headers, body, secrets) {
  const algorithm = headers.get("x-signature-algorithm");
  if (algorithm !== null && algorithm.trim().toUpperCase() !== "HMAC-SHA256") {
    return fail("X-Signature-Algorithm must be HMAC-SHA256");
  }
  const given = headers.get("x-signature").trim();
  if (!HEX64_RE.test(given)) return fail("X-Signature must be 64 hex digits");
  const candidate = hexToBytes(given);
  for (const secret of secrets) {
    const key = await importKey(encoder.encode(secret));
    if (await crypto.subtle.verify("HMAC", key, candidate, body)) {
      return { ok: true, scheme: "legacy", webhookId: null };
    }
  }
  return fail("X-Signature does not match a configured secret");
}

function fail(reason) {
  return { ok: false, reason };
}

function importKey(bytes) {
  return crypto.subtle.importKey("raw", bytes, HMAC, false, ["verify"]);
}

/**
 * The bytes after `whsec_`: standard base64 whose `=` padding is optional
 * but never longer than the length needs; `null` otherwise. The Cursor's
 * `standard_key` (Python) accepts exactly the same strings.
 */
function decodeKeyBase64(encoded) {
  const match = WHSEC_BODY_RE.exec(encoded);
  if (match === null) return null;
  const [, data, padding] = match;
  const needed = (4 - (data.length % 4)) % 4;
  if (needed === 3 || padding.length > needed) return null;
  return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
}

/**
 * A `v1` signature: the canonical base64 of 32 bytes (43 characters and
 * one `=`), as the Cursor and the Standard Webhooks libraries write it and
 * compare it; `null` for anything else.
 */
function decodeSignature(encoded) {
  return SIGNATURE_RE.test(encoded) ? Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0)) : null;
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
