#!/usr/bin/env python3
"""Instructions per packet of a callgrind profile, attributed through the
inline chains the compiler left in the debug info.

callgrind_annotate charges an inlined instruction to the innermost source
line only: in a release build of the packet path, where almost everything
is inlined into `process_burst`, that spreads a packet's instructions over
`slice/index.rs`, `uint_macros.rs` and the like, with no say of which step
of the pipeline they belong to. This reads a profile made with
`--dump-instr=yes`, asks `addr2line -i` for each instruction's whole
chain of inlined frames, and prints the tree: every frame with the
instructions per packet of everything inlined below it, outermost first.

    CG_OUT=/tmp/cg CG_ARGS=--dump-instr=yes WORKER_CASES=nat \\
        scripts/bench-instructions.sh --worker
    # established packets only: the run with every ACK less the run with
    # the first ACK, over FLOWS x ROUNDS packets (1000 x 100 by default)
    scripts/cg-tree.py /tmp/cg/nat-all.cg --minus /tmp/cg/nat-first.cg \\
        --packets 100000 --depth 6 --min 2
    # one function's machine code with each instruction's count per packet
    scripts/cg-tree.py /tmp/cg/nat-all.cg --minus /tmp/cg/nat-first.cg \\
        --packets 100000 --asm 'lb_core::pipeline::egress::Egress::tunnel'

Only instructions of the profiled program's own binary are read (the
`ob=` of its first `cmd:` word, or --binary); DPDK's shared libraries are
left out. Needs binutils (addr2line, objdump, nm). `--self-check` tests
the profile reader on a made-up profile (scripts/test.sh runs it).
"""
import argparse
import collections
import re
import os
import signal
import subprocess
import sys

# The workspace's own paths are printed from its root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"


def costs_of(path, binary_suffix):
    """Self cost (first event, Ir) per instruction address of the objects
    whose name ends with `binary_suffix`; also the binary's full name."""
    costs = collections.Counter()
    names = {}
    ob = None
    binary = None
    last = 0
    after_call = False

    def num(tok, prev):
        if tok == "*":
            return prev
        if tok[0] == "+":
            return prev + int(tok[1:], 0)
        if tok[0] == "-":
            return prev - int(tok[1:], 0)
        return int(tok, 0)

    with open(path) as f:
        if "positions: instr" not in f.read():
            sys.exit(f"{path}: no instruction positions (run callgrind with --dump-instr=yes)")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if m.group(1) == "ob":
                    ob = names.get(m.group(2))
                continue
            if line.startswith("calls="):
                # The next cost line is the call's inclusive cost.
                after_call = True
                continue
            if line[0] in "0123456789+-*":
                toks = line.split()
                addr = num(toks[0], last)
                last = addr
                if after_call:
                    after_call = False
                    continue
                if ob and ob.endswith(binary_suffix) and len(toks) >= 3:
                    costs[addr] += int(toks[2])
                    binary = ob
    return costs, binary


def program_of(path):
    with open(path) as f:
        for line in f:
            if line.startswith("cmd:"):
                return line.split()[1].split("/")[-1]
    sys.exit(f"{path}: no cmd: line")


def chains(binary, addrs):
    """addr -> [(function, file:line)], innermost first."""
    out = subprocess.run(
        ["addr2line", "-e", binary, "-i", "-f", "-C", "-a"],
        input="".join(f"{a:#x}\n" for a in addrs),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    result = {}
    cur = None
    i = 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16)
            result[cur] = []
            i += 1
            continue
        fn = re.sub(r"::h[0-9a-f]{16}$", "", out[i])
        loc = out[i + 1] if i + 1 < len(out) else "?"
        loc = re.sub(r" \(discriminator \d+\)", "", loc)
        loc = re.sub(r"^/rustc/[0-9a-f]+/library/", "std/", loc)
        if loc.startswith(ROOT):
            loc = loc[len(ROOT) :]
        result[cur].append((fn, loc))
        i += 2
    return result


def short(fn):
    # Generic arguments make the long names unreadable: keep their shape.
    while len(fn) > 90 and re.search(r"<[^<>]+>", fn):
        fn = re.sub(r"<[^<>]+>", "<>", fn, count=1)
    return fn


def tree(costs, binary, packets, depth, minimum):
    addrs = sorted(a for a, c in costs.items() if c)
    ch = chains(binary, addrs)
    sums = collections.defaultdict(float)
    for a in addrs:
        path = [f"{short(fn)} @ {loc}" for fn, loc in reversed(ch.get(a, []))]
        for d in range(1, min(depth, len(path)) + 1):
            sums[tuple(path[:d])] += costs[a] / packets
    kids = collections.defaultdict(list)
    for k, v in sums.items():
        kids[k[:-1]].append((v, k))
    total = sum(costs.values()) / packets
    print(f"{total:8.1f} instructions a packet in {binary.split('/')[-1]}")
    below = sum(c for c in costs.values() if c < 0) / packets
    if below < -0.05 * max(total, 1):
        # With --minus, work the two runs did differently that is not
        # per packet (idle polls, start-up) nets out below zero.
        print(f"{below:8.1f} of it below zero: the two profiles differ in more than the packets")

    def show(prefix, indent):
        for v, k in sorted(kids.get(prefix, []), reverse=True):
            if v >= minimum:
                print(f"{v:8.1f} {'  ' * indent}{k[-1]}")
                show(k, indent + 1)

    show((), 0)


def asm(costs, binary, packets, symbol, minimum):
    start = end = None
    for line in subprocess.run(["nm", "-C", "-S", binary], capture_output=True, text=True).stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[3] == symbol:
            start, end = int(parts[0], 16), int(parts[0], 16) + int(parts[1], 16)
    if start is None:
        sys.exit(f"no symbol {symbol!r} in {binary}")
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", f"--start-address={start}", f"--stop-address={end}", binary],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [l for l in dis.splitlines() if re.match(r"^\s+[0-9a-f]+:", l)]
    addrs = [int(l.split(":")[0], 16) for l in lines]
    ch = chains(binary, addrs)
    for l, a in zip(lines, addrs):
        c = costs.get(a, 0) / packets
        if c >= minimum:
            loc = ch.get(a, [("", "")])[0][1].split("/")[-1]
            print(f"{c:6.1f} {l.strip()[:72]:72s} {loc}")


SAMPLE = """# callgrind format
version: 1
cmd: /usr/bin/true --flag
positions: instr line
events: Ir
ob=(1) /usr/bin/true
fl=(1) a.c
fn=(1) main
0x1000 1 30
+4 * 10
cfn=(2) other
calls=1 0x2000 5
* * 1000
+2 -1 20
ob=(2) /usr/lib/libc.so.6
fn=(3) elsewhere
0x5000 1 500
ob=(1)
fn=(1)
0x1000 1 5
"""


def self_check():
    """The parser on a made-up profile: relative addresses, a call's
    inclusive cost (not the caller's own), another object's costs and a
    repeated object all counted as they should be; --minus subtracts."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a.cg"), os.path.join(d, "b.cg")
        with open(a, "w") as f:
            f.write(SAMPLE)
        with open(b, "w") as f:
            f.write(SAMPLE.split("ob=(2)")[0].replace("0x1000 1 30", "0x1000 1 20"))
        costs, binary = costs_of(a, program_of(a))
        want = {0x1000: 35, 0x1004: 10, 0x1006: 20}
        assert binary == "/usr/bin/true", binary
        assert dict(costs) == want, dict(costs)
        less, _ = costs_of(b, program_of(b))
        costs.subtract(less)
        assert dict(costs) == {0x1000: 15, 0x1004: 0, 0x1006: 0}, dict(costs)
    print("cg-tree.py: self-check passed")


def main():
    # Piped into `head`: stop quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if sys.argv[1:] == ["--self-check"]:
        self_check()
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", help="a callgrind.out file made with --dump-instr=yes")
    p.add_argument("--minus", help="a profile of the same binary to subtract (its packets not counted)")
    p.add_argument("--packets", type=float, required=True, help="packets the (difference of the) profile(s) covers")
    p.add_argument("--binary", help="the profiled binary [the ob= named like the cmd: line's program]")
    p.add_argument("--depth", type=int, default=8, help="frames deep [8]")
    p.add_argument("--min", type=float, default=1.0, help="hide frames below this many instructions a packet [1]")
    p.add_argument("--asm", metavar="SYMBOL", help="list this function's instructions instead of the tree")
    a = p.parse_args()
    suffix = a.binary or program_of(a.profile)
    costs, binary = costs_of(a.profile, suffix)
    if binary is None:
        sys.exit(f"{a.profile}: no costs in an object named like {suffix}")
    if a.minus:
        less, _ = costs_of(a.minus, suffix)
        costs.subtract(less)
    binary = a.binary or binary
    if a.asm:
        asm(costs, binary, a.packets, a.asm, a.min)
    else:
        tree(costs, binary, a.packets, a.depth, a.min)


if __name__ == "__main__":
    main()
