//! Golden packets as data: the scenarios under `tests/fixtures/` at the
//! repository root, read by the pipeline's unit tests and by the root
//! integration tests that replay them through the binary.
//!
//! A scenario is a folder `tests/fixtures/<name>/` holding `lb.toml` (the
//! configuration its steps run against) and `steps.txt` (the port MACs and
//! the steps: a frame received on a port, and the frame sent on a port or
//! the reason it is dropped). The frames are built by scapy, an encoder
//! independent of ours (`scripts/gen-forwarding-fixtures.py`,
//! `scripts/gen-local-fixtures.py`, `scripts/gen-synproxy-fixtures.py`). The steps of a scenario run in order
//! through ONE stateful pipeline: earlier steps create the flows later steps
//! use.
//!
//! The format of `steps.txt` is described in `tests/fixtures/README.md`.
//! [`load`] is strict: every malformed line is an error naming the file and
//! the line, and it never panics on bad input. [`scenario`] and [`all`],
//! meant for tests, panic with that error instead.

use std::path::{Path, PathBuf};

use lb_config::{Config, MacAddr};

use crate::stats::DropReason;

/// One step: a frame received, and what must come of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step shows, one line.
    pub description: String,
    /// Index of the port the frame arrives on, in `[[ports]]` order.
    pub in_port: usize,
    /// The frame received.
    pub input: Vec<u8>,
    /// The frame sent and the index of the port it leaves by, or the drop
    /// reason's metric label (`"consumed"`: used, not sent; `"deferred"`:
    /// kept by the worker to run again later, the SYN proxy's early data).
    pub output: Result<(usize, Vec<u8>), String>,
}

/// One scenario folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// The folder's name (`one-arm`, `two-arm`, `local`).
    pub name: String,
    /// The text of its `lb.toml`.
    pub config: String,
    /// The MAC address of each port, in `[[ports]]` order.
    pub port_macs: Vec<MacAddr>,
    /// Run in this order through ONE stateful pipeline.
    pub steps: Vec<Step>,
}

const CONFIG_FILE: &str = "lb.toml";
const STEPS_FILE: &str = "steps.txt";
/// The label of a frame used and not sent (an ARP reply learned).
const CONSUMED: &str = "consumed";
/// The label of a frame kept to run again later (`Verdict::Defer`).
const DEFERRED: &str = "deferred";

/// `<repo>/tests/fixtures`, found from lb-core's CARGO_MANIFEST_DIR at compile time.
pub fn fixtures_dir() -> PathBuf {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    core.parent().unwrap_or(core).join("tests").join("fixtures")
}

/// Parses one scenario folder; every malformed line is an error naming file and line.
///
/// Beyond the syntax of `steps.txt`, the scenario must make sense: its
/// `lb.toml` must be a valid configuration with as many `[[ports]]` as
/// `macs:` lists, every port index must name one of them, and every drop
/// label must be a drop reason's label, `consumed` or `deferred`.
pub fn load(dir: &Path) -> Result<Scenario, String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a scenario folder", dir.display()))?
        .to_string();
    let config_path = dir.join(CONFIG_FILE);
    let config = read(&config_path)?;
    let steps_path = dir.join(STEPS_FILE);
    let text = read(&steps_path)?;
    let file = steps_path.display().to_string();
    let parsed = parse_steps(&file, &text)?;
    let ports = Config::parse(&config)
        .map_err(|e| format!("{}: invalid configuration: {e}", config_path.display()))?
        .ports
        .len();
    if ports != parsed.macs.len() {
        return Err(format!(
            "{file}:{}: macs: lists {} port(s), {} has {ports} [[ports]]",
            parsed.macs_line,
            parsed.macs.len(),
            config_path.display()
        ));
    }
    Ok(Scenario {
        name,
        config,
        port_macs: parsed.macs,
        steps: parsed.steps,
    })
}

/// The global header of a classic pcap file (Ethernet link type, µs).
pub fn pcap_header() -> Vec<u8> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&65535u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    hdr
}

/// One frame's record of a classic pcap file, stamped `seconds`.
pub fn pcap_record(seconds: u32, frame: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(16 + frame.len());
    rec.extend_from_slice(&seconds.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    rec.extend_from_slice(frame);
    rec
}

/// Writes `frames` as a classic pcap file (what `net_pcap`'s `rx_pcap`
/// replays). Panics (it is for tests) when the file cannot be written.
pub fn write_pcap(path: &Path, frames: &[&[u8]]) {
    let mut data = pcap_header();
    for (i, fr) in frames.iter().enumerate() {
        data.extend_from_slice(&pcap_record(i as u32, fr));
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// load(fixtures_dir().join(name)), panicking with the error (for tests).
pub fn scenario(name: &str) -> Scenario {
    load(&fixtures_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Every scenario folder under fixtures_dir(), sorted by name.
///
/// Panics (it is for tests) when the folder cannot be read or any scenario
/// in it does not load.
pub fn all() -> Vec<Scenario> {
    let root = fixtures_dir();
    let entries =
        std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: cannot read: {e}", root.display()));
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: cannot read: {e}", root.display()))
                .path()
        })
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    dirs.iter()
        .map(|d| load(d).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// What `steps.txt` holds.
#[derive(Debug)]
struct Parsed {
    macs: Vec<MacAddr>,
    /// Where `macs:` is (1-based), for errors about it.
    macs_line: usize,
    steps: Vec<Step>,
}

/// A step being read: its fields so far.
struct Partial {
    line: usize,
    description: String,
    in_port: Option<usize>,
    input: Option<Vec<u8>>,
    output: Option<Result<(usize, Vec<u8>), String>>,
}

/// The frame that indented lines continue.
#[derive(Clone, Copy)]
enum Open {
    Nothing,
    Input,
    Output,
}

/// Parses the text of a `steps.txt`; `file` names it in errors.
fn parse_steps(file: &str, text: &str) -> Result<Parsed, String> {
    let mut macs: Option<(Vec<MacAddr>, usize)> = None;
    let mut steps = Vec::new();
    let mut current: Option<Partial> = None;
    let mut open = Open::Nothing;
    for (index, line) in text.split('\n').enumerate() {
        let n = index + 1;
        let err = |msg: String| format!("{file}:{n}: {msg}");
        if line.is_empty() || line.starts_with('#') {
            open = Open::Nothing;
            continue;
        }
        if line.trim_end() != line {
            return Err(err("trailing whitespace".into()));
        }
        if line.starts_with([' ', '\t']) {
            let bytes = hex(line.trim_start()).map_err(err)?;
            let frame = match (open, current.as_mut()) {
                (Open::Input, Some(Partial { input: Some(f), .. })) => f,
                (
                    Open::Output,
                    Some(Partial {
                        output: Some(Ok((_, f))),
                        ..
                    }),
                ) => f,
                _ => {
                    return Err(err(
                        "an indented line continues the hex of `in:` or `out:` only".into(),
                    ))
                }
            };
            frame.extend_from_slice(&bytes);
            continue;
        }
        open = Open::Nothing;
        let Some((key, rest)) = line.split_once(':') else {
            return Err(err(format!(
                "expected `key: value`, indented hex, a `#` comment or a blank line, got {line:?}"
            )));
        };
        let value = match rest.strip_prefix(' ') {
            _ if rest.is_empty() => "",
            Some(v) if !v.is_empty() && !v.starts_with([' ', '\t']) => v,
            _ => {
                return Err(err(format!(
                    "`{key}:` is followed by one space, then its value"
                )))
            }
        };
        let need_value = || {
            if value.is_empty() {
                Err(err(format!("`{key}:` needs a value")))
            } else {
                Ok(value)
            }
        };
        match key {
            "macs" => {
                if macs.is_some() {
                    return Err(err("a second `macs:` line".into()));
                }
                if current.is_some() {
                    return Err(err("`macs:` comes before the first step".into()));
                }
                let list = need_value()?
                    .split(' ')
                    .map(|m| m.parse::<MacAddr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                macs = Some((list, n));
            }
            "step" => {
                let description = need_value()?.to_string();
                if macs.is_none() {
                    return Err(err("`macs:` comes before the first step".into()));
                }
                if let Some(done) = current.take() {
                    steps.push(finish(file, done)?);
                }
                current = Some(Partial {
                    line: n,
                    description,
                    in_port: None,
                    input: None,
                    output: None,
                });
            }
            "port" | "in" | "out" | "drop" => {
                let ports = macs.as_ref().map_or(0, |(m, _)| m.len());
                let Some(step) = current.as_mut() else {
                    return Err(err(format!("`{key}:` before the first `step:`")));
                };
                let expected: &[&str] = match (&step.in_port, &step.input, &step.output) {
                    (None, _, _) => &["port"],
                    (Some(_), None, _) => &["in"],
                    (Some(_), Some(_), None) => &["out", "drop"],
                    (Some(_), Some(_), Some(_)) => &["step"],
                };
                if !expected.contains(&key) {
                    let want: Vec<String> = expected.iter().map(|k| format!("`{k}:`")).collect();
                    return Err(err(format!(
                        "`{key}:` where {} was expected",
                        want.join(" or ")
                    )));
                }
                match key {
                    "port" => step.in_port = Some(port(need_value()?, ports).map_err(err)?),
                    "in" => {
                        step.input = Some(hex(value).map_err(err)?);
                        open = Open::Input;
                    }
                    "out" => {
                        let (p, frame) = need_value()?.split_once(' ').unwrap_or((value, ""));
                        let p = port(p, ports).map_err(err)?;
                        step.output = Some(Ok((p, hex(frame).map_err(err)?)));
                        open = Open::Output;
                    }
                    _ => step.output = Some(Err(label(need_value()?).map_err(err)?)),
                }
            }
            _ => return Err(err(format!("unknown key `{key}:`"))),
        }
    }
    if let Some(done) = current.take() {
        steps.push(finish(file, done)?);
    }
    let Some((macs, macs_line)) = macs else {
        return Err(format!("{file}: no `macs:` line"));
    };
    if steps.is_empty() {
        return Err(format!("{file}: no steps"));
    }
    Ok(Parsed {
        macs,
        macs_line,
        steps,
    })
}

/// Checks that a step read completely; errors name its `step:` line.
fn finish(file: &str, p: Partial) -> Result<Step, String> {
    let Partial {
        line,
        description,
        in_port,
        input,
        output,
    } = p;
    let err = |msg: &str| format!("{file}:{line}: step {description:?}: {msg}");
    let in_port = in_port.ok_or_else(|| err("no `port:` line"))?;
    let input = input.ok_or_else(|| err("no `in:` frame"))?;
    if input.is_empty() {
        return Err(err("the `in:` frame is empty"));
    }
    let output = output.ok_or_else(|| err("neither `out:` nor `drop:`"))?;
    if matches!(&output, Ok((_, f)) if f.is_empty()) {
        return Err(err("the `out:` frame is empty"));
    }
    Ok(Step {
        description,
        in_port,
        input,
        output,
    })
}

/// A port index: decimal digits, below the number of ports.
fn port(text: &str, ports: usize) -> Result<usize, String> {
    let bad = || format!("bad port index {text:?}: expected 0..{ports} (one per `macs:` entry)");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<usize>() {
        Ok(p) if p < ports => Ok(p),
        _ => Err(bad()),
    }
}

/// Bytes as hex digits, two per byte, in groups separated by spaces.
fn hex(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for group in text.split_ascii_whitespace() {
        let digits: Option<Vec<u8>> = group
            .bytes()
            .map(|b| {
                char::from(b)
                    .to_digit(16)
                    .and_then(|d| u8::try_from(d).ok())
            })
            .collect();
        match digits {
            Some(d) if d.len() % 2 == 0 => {
                out.extend(d.chunks_exact(2).map(|pair| (pair[0] << 4) | pair[1]));
            }
            _ => {
                return Err(format!(
                    "bad hex {group:?}: expected pairs of hex digits, one pair per byte"
                ))
            }
        }
    }
    Ok(out)
}

/// A drop label: a drop reason's metric label, `consumed` or `deferred`.
fn label(text: &str) -> Result<String, String> {
    if text == CONSUMED || text == DEFERRED || DropReason::ALL.iter().any(|r| r.as_str() == text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "unknown drop label {text:?}: expected a drop reason's label, `{CONSUMED}` or `{DEFERRED}`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const GOOD: &str = "\
# a comment
macs: 02:00:00:00:00:02 02:00:00:00:01:01

step: forwarded, hex wrapped
port: 0
in: 0a0b
  0c 0d
\t0e
out: 1
  ff ff

step: drop: with a colon
port: 1
in: 01
drop: not_our_mac
step: consumed
port: 0
in:
  AA bb
drop: consumed
";

    fn parse(text: &str) -> Result<Parsed, String> {
        parse_steps("steps.txt", text)
    }

    /// The error for `text`, which must not parse.
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(p) => panic!("parsed: {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_well_formed_file_parses() {
        let p = parse(GOOD).unwrap();
        assert_eq!(
            p.macs,
            vec![MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 1, 1])]
        );
        assert_eq!(p.macs_line, 2);
        assert_eq!(
            p.steps,
            vec![
                Step {
                    description: "forwarded, hex wrapped".into(),
                    in_port: 0,
                    input: vec![0x0a, 0x0b, 0x0c, 0x0d, 0x0e],
                    output: Ok((1, vec![0xff, 0xff])),
                },
                Step {
                    description: "drop: with a colon".into(),
                    in_port: 1,
                    input: vec![1],
                    output: Err("not_our_mac".into()),
                },
                Step {
                    description: "consumed".into(),
                    in_port: 0,
                    input: vec![0xaa, 0xbb],
                    output: Err("consumed".into()),
                },
            ]
        );
    }

    #[test]
    fn no_trailing_newline_is_fine() {
        let p = parse(GOOD.trim_end()).unwrap();
        assert_eq!(p.steps.len(), 3);
    }

    #[test]
    fn malformed_lines_are_errors_naming_file_and_line() {
        // After a valid start: `macs:` on line 1, `step:` 2, `port:` 3.
        let after_head: &[(&str, &str)] = &[
            ("in: 0g\ndrop: truncated\n", "steps.txt:4: bad hex \"0g\""),
            ("in: 012\ndrop: truncated\n", "steps.txt:4: bad hex \"012\""),
            ("in: 01\n  zz\ndrop: truncated\n", "steps.txt:5: bad hex"),
            (
                "in: 01\n\n  02\ndrop: truncated\n",
                "steps.txt:6: an indented line",
            ),
            (
                "in: 01\n# c\n  02\ndrop: truncated\n",
                "steps.txt:6: an indented line",
            ),
            (
                "in: 01\ndrop: truncated\n  02\n",
                "steps.txt:6: an indented line",
            ),
            (
                "in: 01\ndrop: no_such_reason\n",
                "steps.txt:5: unknown drop label",
            ),
            ("in: 01\nout: 1 02\n", "steps.txt:5: bad port index \"1\""),
            ("in: 01\nout: x 02\n", "steps.txt:5: bad port index \"x\""),
            ("in: 01\nout:\n", "steps.txt:5: `out:` needs a value"),
            (
                "in: 01\ndrop: truncated \n",
                "steps.txt:5: trailing whitespace",
            ),
            (
                "in: 01\ndrop: truncated\r\n",
                "steps.txt:5: trailing whitespace",
            ),
            (
                "in: 01\ndrop:  truncated\n",
                "steps.txt:5: `drop:` is followed by one space",
            ),
            (
                "in: 01\ndrop:truncated\n",
                "steps.txt:5: `drop:` is followed by one space",
            ),
            ("in: 01\nfrom: 0\n", "steps.txt:5: unknown key `from:`"),
            ("in: 01\njust words\n", "steps.txt:5: expected `key: value`"),
            (
                "drop: truncated\n",
                "steps.txt:4: `drop:` where `in:` was expected",
            ),
            ("port: 0\n", "steps.txt:4: `port:` where `in:` was expected"),
            (
                "in: 01\nin: 02\n",
                "steps.txt:5: `in:` where `out:` or `drop:` was expected",
            ),
            (
                "in: 01\ndrop: truncated\nout: 0 01\n",
                "steps.txt:6: `out:` where `step:`",
            ),
            (
                "in: 01\ndrop: truncated\nmacs: 02:00:00:00:00:02\n",
                "steps.txt:6: a second `macs:`",
            ),
            (
                "in: 01\nout: 0 0102\nstep: t\nport: 0\n",
                "steps.txt:6: step \"t\": no `in:` frame",
            ),
            (
                "in:\ndrop: truncated\n",
                "steps.txt:2: step \"s\": the `in:` frame is empty",
            ),
            (
                "in: 01\nout: 0\n",
                "steps.txt:2: step \"s\": the `out:` frame is empty",
            ),
            (
                "in: 01\n",
                "steps.txt:2: step \"s\": neither `out:` nor `drop:`",
            ),
        ];
        let whole: &[(&str, &str)] = &[
            (
                "macs: 02:00:00:00:00:02\nport: 0\n",
                "steps.txt:2: `port:` before the first",
            ),
            (
                "step: s\n",
                "steps.txt:1: `macs:` comes before the first step",
            ),
            ("macs: 02:00:00:00:00\n", "steps.txt:1: invalid MAC address"),
            (
                "macs: 02:00:00:00:00:02  02:00:00:00:00:03\n",
                "steps.txt:1: invalid MAC",
            ),
            ("macs:\n", "steps.txt:1: `macs:` needs a value"),
            (
                "macs: 02:00:00:00:00:02\nstep:\n",
                "steps.txt:2: `step:` needs a value",
            ),
            (
                "macs: 02:00:00:00:00:02\nstep: s\n",
                "steps.txt:2: step \"s\": no `port:` line",
            ),
            (
                "macs: 02:00:00:00:00:02\nstep: s\nport: 99999999999999999999\n",
                "steps.txt:3: bad port",
            ),
            (
                "macs: 02:00:00:00:00:02\nstep: s\nport: +0\n",
                "steps.txt:3: bad port index",
            ),
            ("macs: 02:00:00:00:00:02\n", "steps.txt: no steps"),
            ("# nothing\n", "steps.txt: no `macs:` line"),
            ("", "steps.txt: no `macs:` line"),
        ];
        let head = "macs: 02:00:00:00:00:02\nstep: s\nport: 0\n";
        let cases = after_head
            .iter()
            .map(|(rest, want)| (format!("{head}{rest}"), *want))
            .chain(whole.iter().map(|(text, want)| (text.to_string(), *want)));
        for (text, want) in cases {
            let got = error(&text);
            assert!(
                got.starts_with(want),
                "{text:?}:\n  got  {got}\n  want {want}…"
            );
        }
    }

    /// A scenario folder written from `config` and `steps`, removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn new(tag: &str, config: Option<&str>, steps: Option<&str>) -> Folder {
            let dir = std::env::temp_dir()
                .join(format!("lb-golden-{}-{tag}", std::process::id()))
                .join("sample");
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(c) = config {
                std::fs::write(dir.join(CONFIG_FILE), c).unwrap();
            }
            if let Some(s) = steps {
                std::fs::write(dir.join(STEPS_FILE), s).unwrap();
            }
            Folder(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            if let Some(parent) = self.0.parent() {
                let _ = std::fs::remove_dir_all(parent);
            }
        }
    }

    const ONE_PORT: &str = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
        device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n";

    #[test]
    fn a_folder_loads_with_its_name_and_config() {
        let f = Folder::new(
            "ok",
            Some(ONE_PORT),
            Some("macs: 02:00:00:00:00:02\nstep: s\nport: 0\nin: 01\ndrop: truncated\n"),
        );
        let s = load(&f.0).unwrap();
        assert_eq!(s.name, "sample");
        assert_eq!(s.config, ONE_PORT);
        assert_eq!(s.port_macs, vec![MacAddr([2, 0, 0, 0, 0, 2])]);
        assert_eq!(s.steps.len(), 1);
    }

    #[test]
    fn a_bad_folder_is_an_error_naming_the_file() {
        let steps = "macs: 02:00:00:00:00:02\nstep: s\nport: 0\nin: 01\ndrop: truncated\n";
        let f = Folder::new("no-config", None, Some(steps));
        let e = load(&f.0).unwrap_err();
        assert!(e.contains("sample/lb.toml: cannot read"), "{e}");

        let f = Folder::new("no-steps", Some(ONE_PORT), None);
        let e = load(&f.0).unwrap_err();
        assert!(e.contains("sample/steps.txt: cannot read"), "{e}");

        let f = Folder::new("bad-config", Some("[[ports]]\nname = 3\n"), Some(steps));
        let e = load(&f.0).unwrap_err();
        assert!(e.contains("sample/lb.toml: invalid configuration"), "{e}");

        let two = steps.replace(
            "macs: 02:00:00:00:00:02",
            "macs: 02:00:00:00:00:02 02:00:00:00:00:03",
        );
        let f = Folder::new("port-count", Some(ONE_PORT), Some(&two));
        let e = load(&f.0).unwrap_err();
        assert!(
            e.contains("sample/steps.txt:1: macs: lists 2 port(s)")
                && e.contains("has 1 [[ports]]"),
            "{e}"
        );

        let f = Folder::new("utf8", Some(ONE_PORT), None);
        std::fs::write(f.0.join(STEPS_FILE), b"macs: \xff\n").unwrap();
        let e = load(&f.0).unwrap_err();
        assert!(e.contains("sample/steps.txt: cannot read"), "{e}");
    }

    #[test]
    fn the_fixtures_load_sorted_and_make_sense() {
        let all = all();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for name in ["local", "one-arm", "two-arm"] {
            assert!(names.contains(&name), "{name} missing in {names:?}");
        }
        for s in &all {
            assert_eq!(*s, scenario(&s.name));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text: an answer, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
            let _ = parse(&text);
        }

        /// The good file with lines dropped, repeated or cut: still no panic,
        /// and an error always names the file.
        #[test]
        fn mangled_files_never_panic(
            edits in prop::collection::vec((any::<Index>(), 0u8..3, any::<Index>()), 0..6),
        ) {
            let mut lines: Vec<String> = GOOD.lines().map(str::to_string).collect();
            for (at, op, cut) in edits {
                if lines.is_empty() {
                    break;
                }
                let i = at.index(lines.len());
                match op {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    _ => {
                        // GOOD is ASCII: any byte count is a char boundary.
                        let keep = cut.index(lines[i].len() + 1);
                        lines[i].truncate(keep);
                    }
                }
            }
            if let Err(e) = parse(&lines.join("\n")) {
                prop_assert!(e.starts_with("steps.txt"), "{}", e);
            }
        }
    }
}
