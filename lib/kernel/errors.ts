/**
 * What went wrong in a kernel call, in the kernel layer's own terms; the plugin edge (lib/cni)
 * maps each fault to a CNI error code, so nothing here knows CNI.
 * - failed: a tool or syscall failed
 * - busy: a lock another process holds (worth retrying later)
 * - io: a file the call needs could not be used
 * - refused: an argument refused before anything ran (unsafe word, bad sysctl path)
 * - netns: the namespace path cannot be opened or entered
 * - same-netns: the namespace path is the caller's own namespace
 */
export type KernelFault = "failed" | "busy" | "io" | "refused" | "netns" | "same-netns";

export interface KernelErrorDetail {
  /** The command that failed, when a tool ran. */
  argv?: readonly string[];
  status?: number | null;
  stderr?: string;
  /** The failing line of a batch (0-based), when the tool tells. */
  line?: number;
  /** What to show beyond the message (a script, a path). */
  details?: string;
}

export class KernelError extends Error {
  constructor(
    readonly fault: KernelFault,
    message: string,
    readonly detail: KernelErrorDetail = {},
  ) {
    super(message);
  }
}
