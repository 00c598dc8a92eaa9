"""Writes one golden scenario folder, tests/fixtures/<name>/ (lb.toml and
steps.txt), in the format that tests/fixtures/README.md describes and
lb_core::golden reads. Shared by gen-forwarding-fixtures.py and
gen-local-fixtures.py."""
import os
import re

FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
BYTES_PER_LINE = 16


def hex_lines(frame):
    assert frame, "a frame is at least one byte"
    return ["  " + " ".join(f"{b:02x}" for b in frame[i:i + BYTES_PER_LINE])
            for i in range(0, len(frame), BYTES_PER_LINE)]


def render_steps(header, macs, steps):
    """header: comment lines (without '# '); macs: the port MACs in
    [[ports]] order; steps: (description, in_port, input, output) where
    output is (port, frame) or a drop label."""
    out = [f"# {line}".rstrip() for line in header]
    out += ["", "macs: " + " ".join(macs)]
    for desc, in_port, inp, output in steps:
        assert desc and desc == desc.strip() and all(32 <= ord(ch) < 127 for ch in desc), repr(desc)
        assert 0 <= in_port < len(macs), in_port
        out += ["", f"step: {desc}", f"port: {in_port}", "in:"] + hex_lines(inp)
        if isinstance(output, tuple):
            port, frame = output
            assert 0 <= port < len(macs), port
            out += [f"out: {port}"] + hex_lines(frame)
        else:
            assert re.fullmatch(r"[a-z0-9_]+", output), repr(output)
            out.append(f"drop: {output}")
    return "\n".join(out) + "\n"


def write_scenario(root, name, config, header, macs, steps):
    """Writes <root>/<name>/lb.toml (config, as given) and steps.txt."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "lb.toml"), "w") as f:
        f.write(config)
    with open(os.path.join(folder, "steps.txt"), "w") as f:
        f.write(render_steps(header, macs, steps))
    return folder
