// A flash sale against a flashsale deployment, for k6 (https://k6.io):
//
//   k6 run -e BASE_URL=https://sale.example.com -e ADMIN_TOKEN=... -e SERVICE_TOKEN=... loadtest/k6/flashsale.js
//
// Against a deployment with FLASHSALE_BUYER_AUTH=jwt, add -e
// JWT_PRIVATE_JWK="$(cat keys/key.jwk.json)" -e JWT_ISSUER=... -e
// JWT_AUDIENCE=... (and JWT_KID if not loadtest): every buyer then sends an
// ES256 token minted for it (jwt.js), whose public key the deployment's JWKS
// holds (flashsale loadtest -jwt-keygen keys writes both).
//
// setup() seeds one item through the admin API; every iteration is a new
// buyer (a distinct user id) who reserves one unit and, for a share of the
// holds granted, confirms it as the payment backend would, with a service
// token (buyers cannot confirm). The crowd keeps coming after the item is sold
// out, because that is the moment a flash sale is judged on. The run fails
// (non-zero exit) when any request gets a 5xx, when a reservation gets an
// answer other than 201 or 409, when the reserve p99 is over P99_MS, or when
// teardown() finds the item oversold.
//
// loadtest/k6/k6_test.go replays every request this script makes against the
// real API, so keep each one in the form it parses: `const res =
// http.<method>(` + a template literal starting with ${BASE_URL} + an inline
// JSON.stringify({...}) body (or null), and read fields as <const>.json('field').
// A credential goes inline in the params, as Authorization: `Bearer
// ${ADMIN_TOKEN}`, `Bearer ${SERVICE_TOKEN}` or `Bearer ${buyerToken}` (the
// buyer's minted JWT), so the check sends the same one.

import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';
import { importSigningKey, mintToken } from './jwt.js';

// envInt reads an integer option of at least min. A typo must stop the run
// (an exception in the init context exits before any request) rather than
// load the deployment with a value nobody chose.
function envInt(name, fallback, min) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`${name}=${raw}: want an integer of at least ${min}`);
  }
  return n;
}

function envRatio(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const r = Number(raw);
  if (!(r >= 0 && r <= 1)) {
    throw new Error(`${name}=${raw}: want a number in 0..1`);
  }
  return r;
}

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:3004').replace(/\/+$/, '');
const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || '';
// Confirm is the payment backend's call: it needs one of the deployment's
// FLASHSALE_SERVICE_TOKENS.
const SERVICE_TOKEN = __ENV.SERVICE_TOKEN || '';
const STOCK = envInt('STOCK', 100, 0);
const VUS = envInt('VUS', 50, 1);
const DURATION = __ENV.DURATION || '30s';
const P99_MS = envInt('P99_MS', 250, 1);
const CONFIRM_RATIO = envRatio('CONFIRM_RATIO', 0.5);
// Longer than any sensible run: a hold that expired mid-run would return its
// unit to stock, and sold + reserved would no longer say how many were taken.
const HOLD_SECONDS = envInt('HOLD_SECONDS', 600, 1);
// A hot item's stock split over this many buckets (Redis Cluster shards).
const BUCKETS = envInt('BUCKETS', 1, 1);
// Idempotency keys cost the service a write per reservation; off by default,
// on to measure that cost.
const IDEMPOTENCY = ['1', 'true', 'yes'].includes((__ENV.IDEMPOTENCY || '').toLowerCase());
// Buyers' JWTs, for a deployment with FLASHSALE_BUYER_AUTH=jwt: the private
// EC P-256 JWK (its JSON text) whose public half the deployment's JWKS holds
// under JWT_KID, and the issuer and audience the deployment expects. Unset:
// buyers send no token, as FLASHSALE_BUYER_AUTH=none wants.
const JWT_PRIVATE_JWK = __ENV.JWT_PRIVATE_JWK || '';
const JWT_ISSUER = __ENV.JWT_ISSUER || '';
const JWT_AUDIENCE = __ENV.JWT_AUDIENCE || '';
const JWT_KID = __ENV.JWT_KID || 'loadtest';
// Short, as an identity provider's access tokens are; each buyer's token is
// minted for its one iteration.
const JWT_TTL_SECONDS = envInt('JWT_TTL_SECONDS', 300, 30);

if (ADMIN_TOKEN === '') {
  throw new Error('ADMIN_TOKEN is required: setup() seeds the item through the admin API');
}
// Without it every confirm would be a 401: stop before loading the deployment.
if (SERVICE_TOKEN === '' && CONFIRM_RATIO > 0) {
  throw new Error('SERVICE_TOKEN is required to confirm (or set CONFIRM_RATIO=0): confirm needs one of FLASHSALE_SERVICE_TOKENS');
}

if (JWT_PRIVATE_JWK !== '') {
  // A typo in the key or a missing claim would make every reserve a 401.
  JSON.parse(JWT_PRIVATE_JWK);
  if (JWT_ISSUER === '' || JWT_AUDIENCE === '') {
    throw new Error('JWT_PRIVATE_JWK needs JWT_ISSUER and JWT_AUDIENCE: the deployment FLASHSALE_JWT_ISSUER and FLASHSALE_JWT_AUDIENCE');
  }
}

// One JSON header object for every request that has a body.
const JSON_HEADERS = { 'Content-Type': 'application/json' };

// Outcomes, counted by the script because k6's http_req_failed cannot tell a
// correct 409 (sold out) from a broken request.
const serverErrors = new Rate('server_errors');
const granted = new Counter('reservations_granted');
const soldOut = new Counter('reservations_sold_out');
const refused = new Counter('reservations_refused_other');
const confirmed = new Counter('reservations_confirmed');

export const options = {
  vus: VUS,
  duration: DURATION,
  // The summary shows p(99) next to the threshold that judges it.
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    // Any 5xx fails the run: under load the service must refuse (409) or
    // serve, never break.
    server_errors: ['rate==0'],
    // Checks accept only the answers the API documents (201 or 409 for a
    // reservation), so one unexpected status fails the run.
    checks: ['rate==1'],
    'http_req_duration{name:reserve}': [`p(99)<${P99_MS}`],
    // The 12.12 bug as buyers see it: more holds granted than units offered.
    // Exact while no hold expires during the run (HOLD_SECONDS > DURATION).
    reservations_granted: [`count<=${STOCK}`],
  },
};

// record counts a response towards server_errors; a network error (status 0)
// is no 5xx and shows up as a failed check instead.
function record(res) {
  serverErrors.add(res.status >= 500);
}

// describe words a failed response for the log; the problem document's code
// and detail are in its body.
function describe(res) {
  return `${res.request.method} ${res.request.url}: ${res.status} ${res.error || res.body}`;
}

export function setup() {
  // A run id keeps user ids (and the default SKU) distinct from earlier runs
  // against the same deployment, whose buyers would hit the per-user limit.
  const run = Date.now().toString(36);
  const sku = __ENV.SKU || `k6-${run}`;
  const seeded = http.put(
    `${BASE_URL}/admin/v1/items/${sku}`,
    JSON.stringify({ stock: STOCK, per_user_limit: 1, hold_seconds: HOLD_SECONDS, name: 'k6 flash sale', buckets: BUCKETS }),
    { headers: { ...JSON_HEADERS, Authorization: `Bearer ${ADMIN_TOKEN}` }, tags: { name: 'seed' } },
  );
  record(seeded);
  // 201 created, 200 updated (SKU given and already seeded). Anything else
  // leaves nothing worth measuring: test.abort() stops the run with exit code
  // 108 (ScriptAborted) before a single buyer is sent.
  if (!check(seeded, { 'seed: 200 or 201': (r) => r.status === 200 || r.status === 201 })) {
    exec.test.abort(`seeding ${sku} failed: ${describe(seeded)}`);
  }
  if (seeded.json('stock') !== STOCK) {
    exec.test.abort(`seeded ${sku} but its stock is ${seeded.json('stock')}, want ${STOCK}`);
  }
  return { sku, run };
}

// The VU's signing key, imported on its first iteration (importKey is
// asynchronous, which the init context cannot wait for).
let signingKey;

// tokenFor is user's JWT, or '' when buyers send none.
async function tokenFor(user) {
  if (JWT_PRIVATE_JWK === '') {
    return '';
  }
  if (signingKey === undefined) {
    signingKey = await importSigningKey(JWT_PRIVATE_JWK);
  }
  return mintToken(signingKey, { kid: JWT_KID, issuer: JWT_ISSUER, audience: JWT_AUDIENCE, subject: user, ttlSeconds: JWT_TTL_SECONDS });
}

export default async function (data) {
  // exec.vu.idInTest is unique across the whole test and __ITER within the VU,
  // so every iteration is a buyer never seen before.
  const user = `${data.run}-${exec.vu.idInTest}-${__ITER}`;
  const buyerToken = await tokenFor(user);
  const headers = IDEMPOTENCY ? { ...JSON_HEADERS, 'Idempotency-Key': `k6-${user}` } : JSON_HEADERS;
  const reservation = http.post(
    `${BASE_URL}/v1/items/${data.sku}/reservations`,
    JSON.stringify({ user_id: user, quantity: 1 }),
    // 409 is a correct answer in a flash sale; telling k6 so keeps its
    // built-in http_req_failed metric meaningful in the summary. The
    // buyer's token goes only when there is one (spreading '' adds nothing).
    {
      headers: { ...headers, ...(buyerToken && { Authorization: `Bearer ${buyerToken}` }) },
      tags: { name: 'reserve' },
      responseCallback: http.expectedStatuses(201, 409),
    },
  );
  record(reservation);
  const ok = check(reservation, {
    'reserve: 201 or 409': (r) => r.status === 201 || r.status === 409,
  });
  if (!ok) {
    console.warn(describe(reservation));
    return;
  }
  if (reservation.status === 409) {
    const code = String(reservation.json('code'));
    if (code === 'sold_out') {
      soldOut.add(1);
    } else {
      refused.add(1, { code });
    }
    return;
  }
  granted.add(1);
  // Math.random, not __ITER parity: with few iterations per VU a parity rule
  // would confirm all or none of one VU's holds.
  if (Math.random() >= CONFIRM_RATIO) {
    return; // the hold stays pending until it expires
  }
  const id = reservation.json('id');
  const confirmation = http.post(`${BASE_URL}/v1/reservations/${id}/confirm`, null, {
    headers: { Authorization: `Bearer ${SERVICE_TOKEN}` },
    tags: { name: 'confirm' },
  });
  record(confirmation);
  if (check(confirmation, { 'confirm: 200': (r) => r.status === 200 })) {
    confirmed.add(1);
  } else {
    console.warn(describe(confirmation));
  }
}

export function teardown(data) {
  const item = http.get(`${BASE_URL}/v1/items/${data.sku}`, { tags: { name: 'item' } });
  record(item);
  if (item.status !== 200) {
    fail(`reading ${data.sku} after the run: ${describe(item)}`);
  }
  const stock = item.json('stock');
  const available = item.json('available');
  const reserved = item.json('reserved');
  const sold = item.json('sold');
  console.log(`${data.sku}: stock ${stock}, available ${available}, reserved ${reserved}, sold ${sold}`);
  const sound = check(item, {
    'no unit sold twice: sold + reserved <= stock': () => sold + reserved <= stock,
    'units add up: available + reserved + sold == stock': () => available + reserved + sold === stock,
    'no counter below zero': () => available >= 0 && reserved >= 0 && sold >= 0,
  });
  // These checks feed the checks threshold as well, but the verdict should
  // not hang on that: an exception in teardown() is returned as the run's
  // error and k6 exits with code 107 (ScriptException in go.k6.io/k6
  // errext/exitcodes; setup and teardown errors set the exit code since
  // grafana/k6#868), with the numbers in the message.
  if (!sound) {
    fail(`${data.sku} is oversold or inconsistent: stock ${stock}, available ${available}, reserved ${reserved}, sold ${sold}`);
  }
}
