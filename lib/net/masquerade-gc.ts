import { validAttachmentsOf } from "../cni/config.ts";
import { CniError, Code } from "../cni/errors.ts";
import type { Request } from "../cni/skel.ts";
import { delegateIpam } from "./interface-plugin.ts";
import { gcMasquerade } from "./masquerade/index.ts";

type GcConfig = Parameters<typeof validAttachmentsOf>[0] & { name: string; ipam?: { type?: string } };

/**
 * GC of an interface plugin with masquerade (bridge, ptp): the rules of attachments not in the
 * runtime's valid list, then IPAM's own GC.
 */
export async function gcMasqueradeAndIpam(req: Request<GcConfig>) {
  const list = validAttachmentsOf(req.config);
  // Without the runtime's list a leak cannot be told from a live pod: remove nothing.
  const failures = list
    ? gcMasquerade(
        req.config.name,
        list.map((a) => ({ containerId: a.containerID, ifname: a.ifname })),
      )
    : [];
  await delegateIpam("GC", req);
  if (failures.length > 0)
    throw new CniError(Code.Internal, `failed to remove stale masquerade rules: ${failures.join("; ")}`);
}
