/**
 * One container's attachment to one network through one interface: what a DEL, a lock, a notice
 * or a per-container rule is keyed by. (host-local keeps its own {containerId, ifname} pairs: a
 * store belongs to one network.)
 */
export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
}

/** The attachment a CNI call is about. */
export const attachmentOf = (req: { config: { name: string }; containerId: string; ifname: string }): Attachment => ({
  network: req.config.name,
  containerId: req.containerId,
  ifname: req.ifname,
});
