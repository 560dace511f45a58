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

/** Wraps anything thrown into a CniError; untyped failures become code 999 as in the reference. */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof Error) return new CniError(Code.Internal, e.message);
  return new CniError(Code.Internal, String(e));
}
