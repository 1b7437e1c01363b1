// Buyers' test JWTs for flashsale.js, so a k6 run can load a deployment with
// FLASHSALE_BUYER_AUTH=jwt. The signature is WebCrypto's (crypto.subtle, a
// global in k6 since the webcrypto module graduated, and in Node 20, where
// loadtest/k6/k6_test.go runs this file and verifies its tokens with the
// service's own verifier). Only the encodings around it are written here:
// UTF-8 and base64url, which k6 and Node do not share a global for.
//
// ES256 only: WebCrypto's ECDSA signature is the raw r||s that JWS wants,
// and a P-256 signature is cheap enough to mint one per buyer.

// importSigningKey imports a private EC P-256 JWK (the JSON text or the
// object), as `flashsale loadtest -jwt-keygen` writes it to key.jwk.json.
export async function importSigningKey(jwk) {
  const key = typeof jwk === 'string' ? JSON.parse(jwk) : jwk;
  if (key === null || key.kty !== 'EC' || key.crv !== 'P-256' || typeof key.d !== 'string') {
    throw new Error('want a private EC P-256 JWK (kty EC, crv P-256, with d); flashsale loadtest -jwt-keygen writes one');
  }
  return crypto.subtle.importKey('jwk', key, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

// mintToken signs an ES256 JWT for subject with key (from importSigningKey):
// header { alg, typ, kid }, claims iss, aud, sub, and iat = nbf = now,
// exp = now + ttlSeconds. nowMs defaults to the clock.
export async function mintToken(key, { kid, issuer, audience, subject, ttlSeconds, nowMs }) {
  const iat = Math.floor((nowMs === undefined ? Date.now() : nowMs) / 1000);
  const header = { alg: 'ES256', typ: 'JWT', kid };
  const claims = { iss: issuer, aud: audience, sub: subject, iat, nbf: iat, exp: iat + ttlSeconds };
  const input = `${base64url(utf8(JSON.stringify(header)))}.${base64url(utf8(JSON.stringify(claims)))}`;
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, utf8(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

// utf8 encodes s (an issuer may be any string).
export function utf8(s) {
  const out = [];
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
  }
  return new Uint8Array(out);
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

// base64url encodes bytes without padding (RFC 7515, section 2).
export function base64url(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  if (bytes.length - i === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
  } else if (bytes.length - i === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}
