import { BaseConfig, parseWith } from "../../lib/cni/config.ts";
import type { CniEnv } from "../../lib/cni/env.ts";
import { validateIfname } from "../../lib/cni/env.ts";
import { CniError, Code } from "../../lib/cni/errors.ts";
import * as z from "../../lib/cni/zod.ts";

/** host-device's keys as the reference reads them: which node device to move, by one selector. */

const HostDeviceConfig = z.extend(BaseConfig, {
  device: z._default(z.string(), ""),
  hwaddr: z._default(z.string(), ""),
  kernelpath: z._default(z.string(), ""),
  pciBusID: z._default(z.string(), ""),
  runtimeConfig: z.optional(z.looseObject({ deviceID: z.optional(z.string()) })),
});

export type Config = z.infer<typeof HostDeviceConfig>;

export const NO_SELECTOR = `specify either "device", "hwaddr", "kernelpath" or "pciBusID"`;

export function parseConfig(raw: Record<string, unknown>, env: CniEnv): Config {
  const c = parseWith(HostDeviceConfig, raw);
  // The runtime's device (the deviceID capability, a PCI address) overrides pciBusID, as in the reference.
  const deviceID = c.runtimeConfig?.deviceID;
  const conf = deviceID ? { ...c, pciBusID: deviceID } : c;
  // DEL finds the device by CNI_IFNAME and its saved name: a selector is not needed to undo an ADD.
  if (env.command !== "ADD" && env.command !== "CHECK") return conf;
  if (!conf.device && !conf.hwaddr && !conf.kernelpath && !conf.pciBusID)
    throw new CniError(Code.InvalidConfig, NO_SELECTOR);
  if (conf.device) validateIfname(conf.device, "device", Code.InvalidConfig);
  return conf;
}
