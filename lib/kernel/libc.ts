/**
 * The few libc calls Node has no binding for (flock, setns, and the socket calls rtnetlink and the
 * DHCP client need), through bun:ffi in the compiled executable. Loaded once per process and only on paths that need
 * it; undefined under plain Node or a libc that will not load: flock then falls back to flock(1)
 * (the unit tests run that path), link operations go through iproute2, and entering a namespace is
 * an error.
 */
export interface Libc {
  flock(fd: number, op: number): number;
  setns(fd: number, nstype: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  /** ssize_t results come back as bigint (bun:ffi's i64). */
  send(fd: number, buf: Uint8Array, len: number, flags: number): bigint;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array, alen: number): bigint;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): bigint;
  close(fd: number): number;
}

type FfiType = "i32" | "u32" | "u64" | "i64" | "ptr";

interface BunFfi {
  FFIType: Record<FfiType, unknown>;
  dlopen(lib: string, defs: Record<string, { args: unknown[]; returns: unknown }>): { symbols: Libc };
}

let loaded: Promise<Libc | undefined> | undefined;
let ready: Libc | undefined;

export function loadLibc(): Promise<Libc | undefined> {
  loaded ??= open().then((l) => {
    ready = l;
    return l;
  });
  return loaded;
}

/** The libc bindings if loadLibc() has already finished (for synchronous callers). */
export const libcIfLoaded = (): Libc | undefined => ready;

async function open(): Promise<Libc | undefined> {
  if (!process.versions.bun) return undefined;
  const { dlopen, FFIType } = (await import("bun:ffi" as string)) as BunFfi;
  const t = (...names: FfiType[]) => names.map((n) => FFIType[n]);
  const defs = {
    flock: { args: t("i32", "i32"), returns: FFIType.i32 },
    setns: { args: t("i32", "i32"), returns: FFIType.i32 },
    socket: { args: t("i32", "i32", "i32"), returns: FFIType.i32 },
    bind: { args: t("i32", "ptr", "u32"), returns: FFIType.i32 },
    setsockopt: { args: t("i32", "i32", "i32", "ptr", "u32"), returns: FFIType.i32 },
    send: { args: t("i32", "ptr", "u64", "i32"), returns: FFIType.i64 },
    recv: { args: t("i32", "ptr", "u64", "i32"), returns: FFIType.i64 },
    sendto: { args: t("i32", "ptr", "u64", "i32", "ptr", "u32"), returns: FFIType.i64 },
    close: { args: t("i32"), returns: FFIType.i32 },
  };
  for (const lib of ["libc.so.6", "libc.so"]) {
    try {
      return dlopen(lib, defs).symbols;
    } catch {
      // not glibc under this name: try the next one
    }
  }
  return undefined;
}
