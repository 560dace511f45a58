import { KernelError, type KernelFault } from "../kernel/errors.ts";

/** CNI error codes (spec §Error codes); 999 is the reference's "internal" code. */
export const Code = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

/** An error that reaches the runtime as a CNI error object. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = "",
  ) {
    super(msg);
  }

  toJSON(cniVersion: string) {
    return { cniVersion, code: this.code, msg: this.message, details: this.details };
  }
}

/** The CNI code of each kernel-layer fault. */
const KERNEL_CODES: Record<KernelFault, number> = {
  failed: Code.Internal,
  busy: Code.TryAgainLater,
  io: Code.IOFailure,
  refused: Code.InvalidConfig,
  netns: Code.InvalidEnv,
  "same-netns": Code.InvalidNetns,
};

/**
 * Wraps anything thrown into a CniError: a kernel-layer error by its fault, untyped failures as
 * code 999 as in the reference.
 */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof KernelError)
    return new CniError(KERNEL_CODES[e.fault], e.message, e.detail.details ?? e.detail.argv?.join(" ") ?? "");
  if (e instanceof Error) return new CniError(Code.Internal, e.message);
  return new CniError(Code.Internal, String(e));
}
