//! VS/DR: the packet is not touched above Ethernet. The real, on the same
//! segment, has the VIP on a loopback and answers the client directly;
//! only the MAC addresses change (see `super::set_macs`). Nothing else to
//! do: this module exists so that the three methods sit side by side.

use lb_config::MacAddr;

/// Sends the frame to the real's MAC from the port's.
#[inline]
pub fn rewrite(frame: &mut [u8], real_mac: MacAddr, port_mac: MacAddr) {
    super::set_macs(frame, real_mac, port_mac);
}
