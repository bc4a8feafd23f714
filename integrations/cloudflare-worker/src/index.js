/**
 * The Worker that receives the atlasreg-cursor webhooks.
 *
 *   POST /api/v1/hooks/ingest-complete    a run published its Gold
 *   POST /api/v1/hooks/processing-error   a job was given up
 *
 * Bindings: `HOOK_HMAC_SECRET` (secret), `HOOK_HMAC_ADDITIONAL_SECRETS`
 * (secret, comma-separated, during a rotation), `ACCEPT_LEGACY_SIGNATURE`
 * (`true` or `"true"` accepts requests signed with the legacy `X-Signature`
 * only), the R2 bucket `GOLD` the Cursor publishes to, and optionally the KV
 * namespace `HOOK_SEEN` that remembers handled `webhook-id`s.
 *
 * What happens with an accepted webhook is in `handlers.js`; the checks are
 * in `hooks.js` and `verify.js`. Everything else answers 404.
 */

import { createWorker } from "./hooks.js";

export default createWorker();
