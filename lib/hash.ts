/**
 * Hex digests and random names without importing node:crypto: a bundle's node:* imports load at
 * start-up in every plugin process, and node:crypto alone costs about 2 ms there. Under Bun (the
 * shipped executable) the native hasher is used; under plain Node the module is fetched on first use.
 */
type Algorithm = "sha256" | "sha512";

interface BunHasher {
  update(s: string): BunHasher;
  digest(enc: "hex"): string;
}
const bun = (globalThis as { Bun?: { CryptoHasher: new (alg: Algorithm) => BunHasher } }).Bun;

export function hexDigest(algorithm: Algorithm, text: string): string {
  if (bun) return new bun.CryptoHasher(algorithm).update(text).digest("hex");
  const { createHash } = process.getBuiltinModule("node:crypto") as typeof import("node:crypto");
  return createHash(algorithm).update(text).digest("hex");
}

/** `bytes` random bytes as lowercase hex (Web Crypto is a global in both runtimes). */
export function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}
