"""TRex stateless (STL) profile for lb-appliance: a client population to a VIP.

The services are those of examples/lab-nat.toml (and examples/lab-*.toml):
TCP 198.18.1.100:80 ("web") and UDP 198.18.1.100:9000 ("echo"). Clients come
from 198.19.0.0/16: the field engine's tuple generator hands out (address,
port) pairs, address first, so every flow is a distinct client.

Streams:
  syn       one SYN per flow (a single burst of `flows` packets), which is
            what makes the appliance schedule the flow; when it ends it
            starts
  data      the established traffic: ACK|PSH segments with a payload, over
            the same `flows` client tuples in the same order, continuously
  udp_*     a UDP mix to port 9000 over the same clients, in IMIX-like
            sizes (64, 594 and 1400 bytes in the ratio 7:4:1)

TRex fills the Ethernet addresses from its port configuration
(trex_cfg.yaml: dest_mac = the appliance port's MAC). Sequence and ACK
numbers are fixed: a Layer-4 balancer does not look at them. The TCP and
UDP checksums are completed by STLVmFixChecksumHw, that is by the NIC's
checksum offload: on a NIC without it, the appliance drops the packets as
bad_l4_checksum (see loadgen/README.md).

Tunables (trex-console: start -f lb_appliance_profile.py -t ...):
  --flows N          clients (flows) per stream, default 10000
  --syn-pps P        rate of the SYN burst, default 100000
  --data-pps P       rate of the established stream, default 1000000
  --udp-pps P        total rate of the UDP mix, default 120000 (0: no UDP)
  --payload B        data segment payload bytes, default 64
"""

import argparse
import os

from trex_stl_lib.api import (
    CTRexVmInsFixHwCs,
    Ether,
    IP,
    STLPktBuilder,
    STLProfile,
    STLScVmRaw,
    STLStream,
    STLTXCont,
    STLTXSingleBurst,
    STLVmFixChecksumHw,
    STLVmFixIpv4,
    STLVmFlowVar,
    STLVmTupleGen,
    STLVmWrFlowVar,
    TCP,
    UDP,
)

# examples/lab-nat.toml: [[services]] web and echo.
VIP = "198.18.1.100"
TCP_PORT = 80
UDP_PORT = 9000
# The clients' block, 198.19.0.0/16, without its network and broadcast
# addresses.
CLIENT_MIN = "198.19.0.1"
CLIENT_MAX = "198.19.255.254"
SPORT_MIN = 1024
SPORT_MAX = 65535
# UDP mix: (frame size without FCS, share of the UDP rate).
UDP_MIX = ((60, 7), (590, 4), (1396, 1))


def clients_vm(l4, flows):
    """Field engine: source address and port from the tuple generator (the
    same sequence for every stream), then the IPv4 and L4 checksums."""
    l4_type = CTRexVmInsFixHwCs.L4_TYPE_TCP if l4 == "TCP" else CTRexVmInsFixHwCs.L4_TYPE_UDP
    return STLScVmRaw(
        [
            STLVmTupleGen(
                ip_min=CLIENT_MIN,
                ip_max=CLIENT_MAX,
                port_min=SPORT_MIN,
                port_max=SPORT_MAX,
                limit_flows=flows,
                name="client",
            ),
            STLVmWrFlowVar(fv_name="client.ip", pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="client.port", pkt_offset=l4 + ".sport"),
            STLVmFixIpv4(offset="IP"),
            STLVmFixChecksumHw(l3_offset="IP", l4_offset=l4, l4_type=l4_type),
        ]
    )


def padded(pkt, size):
    return pkt / ("x" * max(0, size - len(pkt)))


class LbApplianceProfile(object):
    """SYNs, then established TCP to VIP:80, plus a UDP mix to VIP:9000."""

    def parse(self, tunables, kwargs):
        parser = argparse.ArgumentParser(
            description="lb-appliance client population (%s)" % os.path.basename(__file__),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--flows", type=int, default=10000)
        parser.add_argument("--syn-pps", type=float, default=100000)
        parser.add_argument("--data-pps", type=float, default=1000000)
        parser.add_argument("--udp-pps", type=float, default=120000)
        parser.add_argument("--payload", type=int, default=64)
        if isinstance(tunables, list):
            return parser.parse_args(tunables)
        # Older TRex passes tunables as keyword arguments (-t flows=1000).
        args = parser.parse_args([])
        for key, value in kwargs.items():
            key = key.replace("-", "_")
            if hasattr(args, key):
                setattr(args, key, type(getattr(args, key))(value))
        return args

    def get_streams(self, tunables=None, direction=0, **kwargs):
        args = self.parse(tunables, kwargs)
        base = Ether() / IP(src=CLIENT_MIN, dst=VIP, ttl=64)
        syn = padded(base / TCP(sport=SPORT_MIN, dport=TCP_PORT, flags="S", seq=1000), 60)
        data = base / TCP(sport=SPORT_MIN, dport=TCP_PORT, flags="PA", seq=1001, ack=1)
        data = data / ("x" * args.payload)

        streams = [
            STLStream(
                name="syn",
                packet=STLPktBuilder(pkt=syn, vm=clients_vm("TCP", args.flows)),
                mode=STLTXSingleBurst(total_pkts=args.flows, pps=args.syn_pps),
                next="data",
            ),
            STLStream(
                name="data",
                self_start=False,
                packet=STLPktBuilder(pkt=data, vm=clients_vm("TCP", args.flows)),
                mode=STLTXCont(pps=args.data_pps),
            ),
        ]
        if args.udp_pps > 0:
            total = sum(share for _, share in UDP_MIX)
            for size, share in UDP_MIX:
                dgram = padded(base / UDP(sport=SPORT_MIN, dport=UDP_PORT), size)
                streams.append(
                    STLStream(
                        name="udp_%d" % (size + 4),
                        packet=STLPktBuilder(pkt=dgram, vm=clients_vm("UDP", args.flows)),
                        mode=STLTXCont(pps=args.udp_pps * share / total),
                    )
                )
        return STLProfile(streams).get_streams()


def register():
    """What TRex calls to load the profile."""
    return LbApplianceProfile()
