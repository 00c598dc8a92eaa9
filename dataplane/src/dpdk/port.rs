use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use lb_config::MacAddr;
use lb_core::stats::DropReason;

use super::eal::Eal;
use super::error::DpdkError;
use super::mbuf::MbufBurst;
use super::mempool::Mempool;

const ENOTSUP: i32 = 95;

/// The ports this process started and has not closed. DPDK's ethdev
/// control calls (configure, start, stop, close, stats) are not safe to
/// run concurrently, and a port started twice would hand out its queue
/// tokens twice: two threads polling one queue (found in review). Every
/// control call here holds this lock, and a started port is not started
/// again.
static STARTED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn ethdev() -> MutexGuard<'static, BTreeSet<u16>> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// The counters DPDK keeps for a port (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets the NIC dropped because no rx descriptor was free.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// A started port. Shared by the control thread (stats) and, through its
/// queue tokens, by the workers; stopped and closed when the last holder
/// drops it.
#[derive(Debug, Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

#[derive(Debug)]
struct PortInner {
    id: PortId,
    name: String,
    mac: MacAddr,
    driver: String,
    /// The MTU the device really has (the configured one, unless the
    /// driver refused it).
    mtu: u16,
    /// Descriptors per receive and per transmit queue, as the driver
    /// adjusted them.
    descriptors: (u16, u16),
}

/// The right to receive on one queue of one port. Not `Clone`: exactly one
/// thread polls a queue.
#[derive(Debug)]
pub struct RxQueue {
    port: Port,
    queue: QueueId,
    /// What the queue's receive path serves requests in: [`RX_MULTIPLE`]
    /// for a vector path, 1 for the rest ([`vector_receive`]).
    multiple: usize,
}

/// The right to transmit on one queue of one port. Not `Clone`.
#[derive(Debug)]
pub struct TxQueue {
    port: Port,
    queue: QueueId,
}

/// How a port is to be set up.
#[derive(Debug, Clone)]
pub struct PortSetup<'a> {
    /// The device name DPDK knows it by: the vdev name (`net_af_packet0`)
    /// or the PCI address.
    pub device_name: &'a str,
    pub queues: u16,
    pub mtu: u16,
    pub mempool: Mempool,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// A MAC address to set instead of the device's own.
    pub mac: Option<MacAddr>,
}

impl Port {
    /// Finds the device, configures `queues` rx and tx queues (RSS across
    /// them when more than one), and starts it. Returns the port and its
    /// queue tokens, index i for worker i.
    pub fn start(
        eal: &Eal,
        setup: &PortSetup<'_>,
    ) -> Result<(Port, Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let mut started = ethdev();
        let r = Self::start_locked(eal, setup, &started)?;
        started.insert(r.0.inner.id.0);
        Ok(r)
    }

    /// [`Port::start`], with the ethdev lock held (`started`).
    fn start_locked(
        _eal: &Eal,
        setup: &PortSetup<'_>,
        started: &BTreeSet<u16>,
    ) -> Result<(Port, Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let name = setup.device_name;
        let cname = CString::new(name).map_err(|_| DpdkError {
            op: format!("device name {name:?}"),
            errno: 22,
            hint: "no NUL bytes in device names",
        })?;
        let mut id = 0u16;
        // SAFETY: EAL initialised (&Eal); cname is a valid C string; id is a
        // valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(
                DpdkError::from_ret(format!("finding device {name}"), ret).with_hint(
                    "check the port's device string: a PCI address bound to vfio-pci \
                 (scripts/bind-nics.sh --status) or a vdev such as net_af_packet0,iface=eth1",
                ),
            );
        }
        let port = PortId(id);
        if started.contains(&id) {
            return Err(DpdkError {
                op: format!("starting {name}"),
                errno: 16,
                hint: "the port is already started: each port is set up once",
            });
        }

        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id; info is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                format!("reading device info of {name}"),
                ret,
            ));
        }
        let driver = if info.driver_name.is_null() {
            String::from("unknown")
        } else {
            // SAFETY: driver_name is a static C string owned by the driver.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if setup.queues > info.max_rx_queues || setup.queues > info.max_tx_queues {
            return Err(DpdkError {
                op: format!(
                    "configuring {} queues on {name} ({driver} allows {} rx, {} tx)",
                    setup.queues, info.max_rx_queues, info.max_tx_queues
                ),
                errno: 22,
                hint: "use fewer worker lcores, or give the device more queues \
                       (net_af_packet: qpairs=N; net_pcap: one rx_pcap/tx_pcap per queue)",
            });
        }

        let mut conf = dpdk_sys::rte_eth_conf::default();
        if setup.queues > 1 {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            // SAFETY: a pure function returning a constant.
            let wanted = unsafe { dpdk_sys::lb_rss_hf_ip_tcp_udp() };
            conf.rx_adv_conf.rss_conf.rss_hf = wanted & info.flow_type_rss_offloads;
        }
        // The IPv4 header checksum checked by the NIC where it can, so
        // the pipeline does not check it again (`Mbuf::rx_ip_checksum`).
        // SAFETY: a pure function returning a constant.
        let ip_cksum = unsafe { dpdk_sys::lb_rx_offload_ipv4_cksum() };
        if info.rx_offload_capa & ip_cksum != 0 {
            conf.rxmode.offloads |= ip_cksum;
            log::info!("{name}: the NIC checks IPv4 header checksums");
        }
        let mtu_ok = setup.mtu >= info.min_mtu && setup.mtu <= info.max_mtu;
        if mtu_ok {
            conf.rxmode.mtu = u32::from(setup.mtu);
        }
        // SAFETY: valid port, stopped; conf is a valid, fully initialised
        // configuration that DPDK copies.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(id, setup.queues, setup.queues, &conf) };
        if ret != 0 {
            return Err(DpdkError::from_ret(format!("configuring {name}"), ret));
        }
        let mut nb_rx = setup.rx_descriptors;
        let mut nb_tx = setup.tx_descriptors;
        // SAFETY: valid configured port; valid out-pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                format!("sizing the rings of {name}"),
                ret,
            ));
        }
        // SAFETY: valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        // Unknown (-1, SOCKET_ID_ANY): passed on as is, so that DPDK takes
        // memory from any socket rather than insisting on socket 0.
        let socket = socket as u32;
        for q in 0..setup.queues {
            // SAFETY: valid configured port, queue index below the configured
            // count; a NULL rxconf means the driver's defaults; the mempool
            // lives for the process.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nb_rx,
                    socket,
                    std::ptr::null(),
                    setup.mempool.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(
                    DpdkError::from_ret(format!("setting up rx queue {q} of {name}"), ret)
                        .with_hint("more [dpdk] mbufs may be needed for the rx rings"),
                );
            }
            // SAFETY: as above, for the tx queue; NULL txconf = defaults.
            let ret =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, nb_tx, socket, std::ptr::null()) };
            if ret != 0 {
                return Err(DpdkError::from_ret(
                    format!("setting up tx queue {q} of {name}"),
                    ret,
                ));
            }
        }
        let mut software_mac = None;
        if let Some(mac) = setup.mac {
            let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac.0 };
            // SAFETY: valid configured port; addr is a valid pointer that
            // DPDK copies.
            let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
            if ret == -ENOTSUP {
                // The device keeps its own MAC: receive everything and let
                // the pipeline filter on the configured one.
                // SAFETY: valid configured port.
                let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
                if ret != 0 && ret != -ENOTSUP {
                    return Err(DpdkError::from_ret(
                        format!("enabling promiscuous mode on {name}"),
                        ret,
                    ));
                }
                log::warn!("{name}: {driver} cannot change its MAC; receiving promiscuously and answering as {mac}");
                software_mac = Some(mac);
            } else if ret != 0 {
                return Err(
                    DpdkError::from_ret(format!("setting MAC {mac} on {name}"), ret)
                        .with_hint("remove the port's mac key to keep the device's own address"),
                );
            }
        }
        // SAFETY: valid, fully configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if ret != 0 {
            return Err(DpdkError::from_ret(format!("starting {name}"), ret));
        }
        if !mtu_ok {
            log::warn!(
                "{name}: MTU {} outside what {driver} accepts ({}..={}); the port keeps the driver's own, \
                 and the dataplane uses the smaller of the two",
                setup.mtu,
                info.min_mtu,
                info.max_mtu
            );
        }
        let mut mac = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid started port; valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(id, &mut mac) };
        if ret != 0 {
            // Not left running with nobody to poll or stop it (found in
            // review). SAFETY: valid started port; its queue tokens were
            // never handed out.
            let _ = unsafe { dpdk_sys::rte_eth_dev_stop(id) };
            return Err(DpdkError::from_ret(
                format!("reading the MAC address of {name}"),
                ret,
            ));
        }
        let mut mtu = setup.mtu;
        if !mtu_ok {
            let mut actual = 0u16;
            // SAFETY: valid started port; valid out-pointer.
            if unsafe { dpdk_sys::rte_eth_dev_get_mtu(id, &mut actual) } == 0 && actual > 0 {
                mtu = actual;
            }
        }
        let port = Port {
            inner: Arc::new(PortInner {
                id: port,
                name: name.to_owned(),
                mac: software_mac.unwrap_or(MacAddr(mac.addr_bytes)),
                driver,
                mtu,
                descriptors: (nb_rx, nb_tx),
            }),
        };
        let rx = (0..setup.queues)
            .map(|q| RxQueue {
                port: port.clone(),
                queue: QueueId(q),
                multiple: if vector_receive(id, q, name) {
                    RX_MULTIPLE
                } else {
                    1
                },
            })
            .collect();
        let tx = (0..setup.queues)
            .map(|q| TxQueue {
                port: port.clone(),
                queue: QueueId(q),
            })
            .collect();
        Ok((port, rx, tx))
    }

    pub fn id(&self) -> PortId {
        self.inner.id
    }

    pub fn device_name(&self) -> &str {
        &self.inner.name
    }

    pub fn mac(&self) -> MacAddr {
        self.inner.mac
    }

    pub fn driver(&self) -> &str {
        &self.inner.driver
    }

    /// The MTU the port has: the configured one, or the driver's when it
    /// refused that.
    pub fn mtu(&self) -> u16 {
        self.inner.mtu
    }

    /// Descriptors per receive and per transmit queue (what the driver
    /// made of the ones asked for).
    pub fn descriptors(&self) -> (u16, u16) {
        self.inner.descriptors
    }

    /// The port's counters, as the driver keeps them.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // Some drivers add clear-on-read registers up here: one reader at
        // a time.
        let _ethdev = ethdev();
        // SAFETY: valid started port; valid out-pointer; no other ethdev
        // control call runs meanwhile (the lock).
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id.0, &mut s) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                format!("reading stats of {}", self.inner.name),
                ret,
            ));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // No queue token and no Port handle is left: nobody polls this port
        // any more, so it can be stopped and closed (which also flushes
        // drivers such as net_pcap's tx file).
        let mut started = ethdev();
        // SAFETY: valid started port with no remaining users; no other
        // ethdev control call runs meanwhile (the lock).
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id.0) };
        if ret != 0 {
            log::warn!(
                "stopping {}: {}",
                self.name,
                DpdkError::from_ret("rte_eth_dev_stop", ret)
            );
        }
        // SAFETY: stopped port with no remaining users; closed once.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id.0) };
        if ret != 0 {
            log::warn!(
                "closing {}: {}",
                self.name,
                DpdkError::from_ret("rte_eth_dev_close", ret)
            );
        }
        started.remove(&self.id.0);
    }
}

/// What vector receive paths take a request in: they serve a multiple of
/// 4 or 8 packets, rounding down, and nothing below ("must be divisible
/// by 8 in order to work with any driver", `rte_ethdev.h`).
const RX_MULTIPLE: usize = 8;

/// Whether queue `queue` of the started port `id` receives through a
/// vector path, as the driver describes it (`rte_eth_rx_burst_mode_get`:
/// "Vector SSE", "Vector AVX2", "Vector Neon"...; a driver that does not
/// say is taken as scalar).
fn vector_receive(id: u16, queue: u16, name: &str) -> bool {
    let mut mode = dpdk_sys::rte_eth_burst_mode::default();
    // SAFETY: a valid started port and one of its queues; a valid
    // out-pointer to a zeroed struct the driver fills.
    let ret = unsafe { dpdk_sys::rte_eth_rx_burst_mode_get(id, queue, &mut mode) };
    if ret != 0 {
        return false;
    }
    let info: Vec<u8> = mode
        .info
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| (c as u8).to_ascii_lowercase())
        .collect();
    let info = String::from_utf8_lossy(&info);
    let vector = ["vec", "sse", "avx", "neon"]
        .iter()
        .any(|w| info.contains(w));
    if vector {
        log::info!(
            "{name} queue {queue}: receive path {info:?}: bursts are asked for in multiples of {RX_MULTIPLE}"
        );
    }
    vector
}

/// How many packets to ask a receive queue for, with room for `spare` and
/// `[dpdk] burst` = `max`, of a queue that serves requests in multiples of
/// `multiple`: `max` rounded up to a multiple, within `spare` rounded down
/// to one (found in audit: a burst of 1 to 3 asked ixgbe, i40e or ice
/// for nothing, and the port received nothing, without a word; 20 got
/// 16). A worker then takes a few more packets a poll than its burst
/// says. Only with less room than a multiple is the request the room
/// itself. Other queues get `max` as written: some block until they have
/// as many as asked (`net_pcap` reading a pipe).
fn rx_request(spare: usize, max: usize, multiple: usize) -> u16 {
    let multiple = multiple.max(1);
    let wanted = max.max(1).div_ceil(multiple) * multiple;
    let room = spare / multiple * multiple;
    let n = if room == 0 { spare } else { wanted.min(room) };
    n.min(usize::from(u16::MAX) / multiple * multiple) as u16
}

impl RxQueue {
    pub fn port(&self) -> &Port {
        &self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Receives up to the burst's free space (and at most `max`) packets,
    /// appending those the packet path may be given (one segment, a
    /// buffer of its own: [`super::Mbuf::unfit`]); the others are freed and their
    /// reasons handed to `unfit`. Returns how many arrived, both kinds.
    #[inline]
    pub fn rx_burst(
        &mut self,
        burst: &mut MbufBurst,
        max: usize,
        mut unfit: impl FnMut(DropReason),
    ) -> usize {
        let start = burst.len();
        let (ptr, spare) = burst.spare_raw();
        let want = rx_request(spare, max, self.multiple);
        // SAFETY: this token is the only poller of (port, queue) (&mut self,
        // not Clone); ptr has room for `want` pointers.
        let n =
            unsafe { dpdk_sys::lb_rte_eth_rx_burst(self.port.inner.id.0, self.queue.0, ptr, want) };
        // SAFETY: the driver filled the first n slots with mbufs it gives
        // up; the ones whose buffers are not theirs alone go just below.
        unsafe { burst.commit(n as usize) };
        // Ports are set up without scatter, and a shared buffer is the
        // exception (zero-copy receive): one pass to look, one to sort.
        if burst.as_mut_slice()[start..]
            .iter()
            .any(|m| m.unfit().is_some())
        {
            burst.retain_from(start, |m| match m.unfit() {
                None => true,
                Some(reason) => {
                    unfit(reason);
                    false
                }
            });
        }
        n as usize
    }
}

impl TxQueue {
    pub fn port(&self) -> &Port {
        &self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Offers every packet of the burst to the NIC. Those it took are gone
    /// from the burst; the rest stay (the caller retries or frees them).
    /// Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut MbufBurst) -> usize {
        let (ptr, len) = burst.raw_mut();
        if len == 0 {
            return 0;
        }
        // SAFETY: this token is the only sender on (port, queue); ptr holds
        // len owned mbufs; the driver takes ownership of the first n.
        let n = unsafe {
            dpdk_sys::lb_rte_eth_tx_burst(self.port.inner.id.0, self.queue.0, ptr, len as u16)
        };
        burst.consume_front(n as usize);
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in audit: a `[dpdk] burst` below 4 asked a vector driver for
    /// nothing, and one not a multiple of 8 for less than it said. Other
    /// queues get the burst as written.
    #[test]
    fn a_receive_request_is_a_multiple_vector_drivers_serve() {
        let v = RX_MULTIPLE;
        assert_eq!(rx_request(128, 1, v), 8);
        assert_eq!(rx_request(128, 3, v), 8);
        assert_eq!(rx_request(128, 20, v), 24);
        assert_eq!(rx_request(128, 32, v), 32);
        assert_eq!(rx_request(128, 128, v), 128);
        assert_eq!(rx_request(12, 32, v), 8, "within the room");
        assert_eq!(rx_request(5, 32, v), 5, "less room than a multiple");
        assert_eq!(rx_request(0, 32, v), 0);
        for spare in 0..=super::super::MAX_BURST {
            for max in 1..=super::super::MAX_BURST {
                let n = usize::from(rx_request(spare, max, v));
                assert!(n <= spare, "{spare} {max}: {n}");
                if spare >= v {
                    assert_eq!(n % v, 0, "{spare} {max}: {n}");
                    assert!(n >= max.min(spare / v * v));
                }
                assert_eq!(usize::from(rx_request(spare, max, 1)), max.min(spare));
            }
        }
    }
}
