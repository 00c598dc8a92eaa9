-- pktgen-dpdk script for lb-appliance: a client population to a VIP.
--
-- The services are those of examples/lab-nat.toml: TCP 198.18.1.100:80
-- ("web") and UDP 198.18.1.100:9000 ("echo"). Clients are FLOWS distinct
-- addresses from 198.19.0.0/16 (198.19.0.1 upwards), one flow each.
--
-- Phases, on port PORT, in range mode:
--   1. syn   one TCP SYN per client (a count-limited run of FLOWS packets):
--            the appliance schedules a flow per SYN;
--   2. data  established traffic (ACK|PSH) from the same clients, for SECONDS;
--   3. udp   UDP from the same clients to port 9000, for SECONDS.
--
-- Run (see loadgen/README.md):
--   pktgen -l 0-2 -n 4 -a <PCI> -- -P -m "[1:2].0" -f lb-appliance.lua
-- Edit DST_MAC to the appliance port's MAC (or resolve it with ARP first).

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local PORT = "0"
local DST_MAC = "02:00:00:00:00:02"   -- the appliance port's MAC
local VIP = "198.18.1.100"            -- examples/lab-nat.toml [[services]] vip
local TCP_PORT = 80                   -- service "web", protocol tcp
local UDP_PORT = 9000                 -- service "echo", protocol udp
local CLIENT_FIRST = "198.19.0.1"     -- clients: 198.19.0.0/16
local FLOWS = 10000                   -- distinct clients (at most 65534)
local SPORT = 1024                    -- each client's source port
local SIZE = 64                       -- frame size (pktgen adds no FCS)
local RATE = 10                       -- percent of line rate
local SECONDS = 10                    -- length of the data and udp phases

-- The address `n` above `first` ("a.b.c.d"), in dotted form.
local function ip_add(first, n)
    local a, b, c, d = first:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    local v = ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d) + n
    return string.format("%d.%d.%d.%d", (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255, v & 255)
end

local CLIENT_LAST = ip_add(CLIENT_FIRST, FLOWS - 1)

-- TCP flags in range mode (the CLI's `range <port> tcp flag set|clr <flag>`):
-- called through Lua where this pktgen version offers it; otherwise the
-- command to type at the pktgen prompt is printed.
local function tcp_flag(op, flag)
    local ok = pktgen.range.tcp_flags ~= nil and pcall(pktgen.range.tcp_flags, PORT, op, flag)
    if not ok then
        print(string.format("type at the prompt: range %s tcp flag %s %s", PORT, op, flag))
    end
end

local function range(proto, dport)
    pktgen.range.ip_proto(PORT, proto)

    pktgen.range.dst_mac(PORT, "start", DST_MAC)

    pktgen.range.dst_ip(PORT, "start", VIP)
    pktgen.range.dst_ip(PORT, "inc", "0.0.0.0")
    pktgen.range.dst_ip(PORT, "min", VIP)
    pktgen.range.dst_ip(PORT, "max", VIP)

    -- Many clients: the source address walks 198.19.0.1 .. CLIENT_LAST.
    pktgen.range.src_ip(PORT, "start", CLIENT_FIRST)
    pktgen.range.src_ip(PORT, "inc", "0.0.0.1")
    pktgen.range.src_ip(PORT, "min", CLIENT_FIRST)
    pktgen.range.src_ip(PORT, "max", CLIENT_LAST)

    pktgen.range.src_port(PORT, "start", SPORT)
    pktgen.range.src_port(PORT, "inc", 0)
    pktgen.range.src_port(PORT, "min", SPORT)
    pktgen.range.src_port(PORT, "max", SPORT)

    pktgen.range.dst_port(PORT, "start", dport)
    pktgen.range.dst_port(PORT, "inc", 0)
    pktgen.range.dst_port(PORT, "min", dport)
    pktgen.range.dst_port(PORT, "max", dport)

    pktgen.range.pkt_size(PORT, "start", SIZE)
    pktgen.range.pkt_size(PORT, "inc", 0)
    pktgen.range.pkt_size(PORT, "min", SIZE)
    pktgen.range.pkt_size(PORT, "max", SIZE)
end

local function run(name, count, ms)
    print(string.format("%s: %s clients %s-%s to %s", name,
        count == 0 and "continuous" or tostring(count), CLIENT_FIRST, CLIENT_LAST, VIP))
    pktgen.clear(PORT)
    pktgen.set(PORT, "count", count)
    pktgen.start(PORT)
    pktgen.delay(ms)
    pktgen.stop(PORT)
    pktgen.delay(500)
end

pktgen.stop(PORT)
pktgen.set_type(PORT, "ipv4")
pktgen.set(PORT, "rate", RATE)
pktgen.set_range(PORT, "on")
pktgen.page("range")

-- 1. SYNs to VIP:80, one per client.
range("tcp", TCP_PORT)
tcp_flag("clr", "ack")
tcp_flag("set", "syn")
run("syn", FLOWS, 3000)

-- 2. Established traffic to VIP:80 from the same clients.
tcp_flag("clr", "syn")
tcp_flag("set", "ack")
tcp_flag("set", "psh")
run("data", 0, SECONDS * 1000)

-- 3. UDP to VIP:9000 from the same clients.
range("udp", UDP_PORT)
run("udp", 0, SECONDS * 1000)

pktgen.page("main")
print("done: compare the port counters with lb-appliance status (flows per real)")
