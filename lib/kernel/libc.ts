/**
 * The few libc calls Node has no binding for (flock, setns), through bun:ffi in the compiled
 * executable. Loaded once per process and only on paths that need it; undefined under plain Node
 * or a libc that will not load: flock then falls back to flock(1) (the unit tests run that path),
 * and entering a namespace is an error.
 */
export interface Libc {
  flock(fd: number, op: number): number;
  setns(fd: number, nstype: number): number;
}

interface BunFfi {
  FFIType: { i32: unknown };
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
  const i32 = FFIType.i32;
  for (const lib of ["libc.so.6", "libc.so"]) {
    try {
      return dlopen(lib, { flock: { args: [i32, i32], returns: i32 }, setns: { args: [i32, i32], returns: i32 } })
        .symbols;
    } catch {
      // not glibc under this name: try the next one
    }
  }
  return undefined;
}
