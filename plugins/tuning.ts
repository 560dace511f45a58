import { CniError, Code } from "../lib/cni/errors.ts";
import { BaseConfig, parseWith } from "../lib/cni/config.ts";
import type { PluginImpl } from "../lib/cni/skel.ts";

// Placeholder until the tuning issue lands: refuses every verb with a clear error.
const notYet = () => {
  throw new CniError(Code.Internal, "tuning is not implemented yet");
};
const plugin: PluginImpl<BaseConfig> = { parseConfig: (raw) => parseWith(BaseConfig, raw), add: notYet, del: notYet, check: notYet };
export default plugin;
