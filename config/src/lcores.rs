//! EAL core lists found in `dpdk.eal_args`: `-l LIST`, `--lcores LIST` (with
//! `a@b` / `(a,b)@c` groups) and `-c HEXMASK`, plus `--main-lcore N`.
//!
//! Every lcore id is checked against DPDK's `RTE_MAX_LCORE` as it is
//! parsed, before any range is expanded: `-l 0-4294967295` in a file is
//! refused at once instead of expanding four billion ids (about 55 GB) in
//! the running appliance during a reload's validation.

use std::collections::BTreeSet;

/// DPDK's `RTE_MAX_LCORE` (128 in Debian's DPDK 22.11 build,
/// `rte_build_config.h`): lcore ids run from 0 to this minus one, and the
/// EAL refuses any other. The dataplane checks at compile time that the
/// DPDK it is built against agrees.
pub const RTE_MAX_LCORE: u32 = 128;

/// The lcores an EAL argument vector enables, and its main lcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalCores {
    /// Every lcore id the EAL will create.
    pub lcores: BTreeSet<u32>,
    /// The main lcore (`--main-lcore`, else the lowest enabled lcore).
    pub main: u32,
    /// The core list as written, for messages.
    pub text: String,
}

/// An error inside `eal_args`: the index of the offending argument and a reason.
pub type EalArgError = (usize, String);

fn parse_id(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid lcore id {s:?}"));
    }
    let beyond = || {
        format!(
            "lcore id {s} is beyond DPDK's limit (RTE_MAX_LCORE {RTE_MAX_LCORE}: ids 0-{})",
            RTE_MAX_LCORE - 1
        )
    };
    let id: u32 = s.parse().map_err(|_| beyond())?;
    if id >= RTE_MAX_LCORE {
        return Err(beyond());
    }
    Ok(id)
}

/// Parses a plain core list such as `0-3,5` (as `-l` takes it).
pub fn parse_core_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    if s.is_empty() {
        return Err("empty core list".to_string());
    }
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_id(a)?, parse_id(b)?);
                if a > b {
                    return Err(format!("invalid lcore range {item:?}"));
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(parse_id(item)?);
            }
        }
    }
    Ok(out)
}

/// Splits on `sep` where it is not inside parentheses.
fn split_top(s: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced parentheses in {s:?}"));
                }
            }
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {s:?}"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Parses an `--lcores` value such as `0-3`, `1@2,(4,5)@6`: the lcore ids
/// are what stands before each `@`.
pub fn parse_lcores_map(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    if s.is_empty() {
        return Err("empty lcore list".to_string());
    }
    for element in split_top(s, ',')? {
        let group = match split_top(element, '@')?.as_slice() {
            [group] | [group, _] => *group,
            _ => return Err(format!("invalid lcore group {element:?}")),
        };
        let inner = match group.strip_prefix('(') {
            Some(rest) => rest
                .strip_suffix(')')
                .ok_or_else(|| format!("invalid lcore group {element:?}"))?,
            None => group,
        };
        out.extend(parse_core_list(inner)?);
    }
    Ok(out)
}

/// Parses a `-c` hexadecimal core mask (`0x3`, `f`).
pub fn parse_core_mask(s: &str) -> Result<BTreeSet<u32>, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("invalid core mask {s:?}"));
    }
    let mut out = BTreeSet::new();
    for (nibble_index, c) in hex.chars().rev().enumerate() {
        let nibble = c.to_digit(16).unwrap_or(0);
        for bit in 0..4u32 {
            if nibble & (1 << bit) != 0 {
                let id = u32::try_from(nibble_index)
                    .ok()
                    .and_then(|n| n.checked_mul(4))
                    .and_then(|n| n.checked_add(bit))
                    .filter(|&id| id < RTE_MAX_LCORE)
                    .ok_or_else(|| {
                        format!(
                            "core mask {s:?} enables cores beyond DPDK's limit \
                             (RTE_MAX_LCORE {RTE_MAX_LCORE}: ids 0-{})",
                            RTE_MAX_LCORE - 1
                        )
                    })?;
                out.insert(id);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("core mask {s:?} enables no core"));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum ListKind {
    List,
    Map,
    Mask,
}

/// Returns the value of an option at `args[i]` if it is `short`/`long`, in
/// separate (`-l 0-3`), attached (`-l0-3`) or `--long=value` form, and how
/// many arguments it used.
fn option_value<'a>(
    args: &'a [String],
    i: usize,
    short: Option<&str>,
    long: Option<&str>,
) -> Option<(Option<&'a str>, usize)> {
    let arg = args[i].as_str();
    if long == Some(arg) || short == Some(arg) {
        return Some((args.get(i + 1).map(String::as_str), 2));
    }
    if let Some(v) = long.and_then(|l| arg.strip_prefix(l)?.strip_prefix('=')) {
        return Some((Some(v), 1));
    }
    if let Some(short) = short {
        if let Some(v) = arg.strip_prefix(short) {
            if !arg.starts_with("--") {
                return Some((Some(v), 1));
            }
        }
    }
    None
}

/// Scans EAL arguments for a core list and main lcore. `Ok(None)` when the
/// arguments name no core list (the EAL then uses every core).
pub fn eal_cores(args: &[String]) -> Result<Option<EalCores>, Vec<EalArgError>> {
    let mut errors = Vec::new();
    let mut list: Option<(BTreeSet<u32>, String)> = None;
    let mut main: Option<(usize, u32)> = None;
    let mut i = 0;
    while i < args.len() {
        let found = [
            (Some("-l"), None, ListKind::List),
            (None, Some("--lcores"), ListKind::Map),
            (Some("-c"), None, ListKind::Mask),
        ]
        .into_iter()
        .find_map(|(short, long, kind)| option_value(args, i, short, long).map(|v| (v, kind)));
        if let Some(((value, used), kind)) = found {
            match value {
                None => errors.push((i, format!("{} needs a value", args[i]))),
                Some(v) => {
                    let parsed = match kind {
                        ListKind::List => parse_core_list(v),
                        ListKind::Map => parse_lcores_map(v),
                        ListKind::Mask => parse_core_mask(v),
                    };
                    match parsed {
                        Ok(set) => list = Some((set, v.to_string())),
                        Err(e) => errors.push((i + used - 1, e)),
                    }
                }
            }
            i += used;
            continue;
        }
        let main_opt = option_value(args, i, None, Some("--main-lcore"))
            .or_else(|| option_value(args, i, None, Some("--master-lcore")));
        if let Some((value, used)) = main_opt {
            match value.map(parse_id) {
                None => errors.push((i, format!("{} needs a value", args[i]))),
                Some(Ok(id)) => main = Some((i + used - 1, id)),
                Some(Err(e)) => errors.push((i + used - 1, e)),
            }
            i += used;
            continue;
        }
        i += 1;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some((lcores, text)) = list else {
        return Ok(None);
    };
    let main = match main {
        Some((index, id)) => {
            if !lcores.contains(&id) {
                return Err(vec![(
                    index,
                    format!("main lcore {id} is not in the EAL core list ({text})"),
                )]);
            }
            id
        }
        None => match lcores.first() {
            Some(first) => *first,
            None => return Ok(None),
        },
    };
    Ok(Some(EalCores { lcores, main, text }))
}

/// The main lcore: `--main-lcore` if given, else the lowest lcore of the core
/// list, else `None`. Malformed arguments give `None`.
pub fn eal_main_lcore(args: &[String]) -> Option<u32> {
    match eal_cores(args) {
        Ok(Some(cores)) => Some(cores.main),
        Ok(None) => {
            let mut main = None;
            for i in 0..args.len() {
                if let Some((Some(v), _)) = option_value(args, i, None, Some("--main-lcore"))
                    .or_else(|| option_value(args, i, None, Some("--master-lcore")))
                {
                    main = parse_id(v).ok();
                }
            }
            main
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0-3,5").unwrap(), set(&[0, 1, 2, 3, 5]));
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("1,,2").is_err());
        assert!(parse_core_list("a").is_err());
        assert_eq!(
            parse_lcores_map("1@2,(4,5)@6,7").unwrap(),
            set(&[1, 4, 5, 7])
        );
        assert_eq!(
            parse_lcores_map("(0-2)@(0,1),3").unwrap(),
            set(&[0, 1, 2, 3])
        );
        assert!(parse_lcores_map("(1,2").is_err());
        assert_eq!(parse_core_mask("0x3").unwrap(), set(&[0, 1]));
        assert_eq!(parse_core_mask("30").unwrap(), set(&[4, 5]));
        assert!(parse_core_mask("0x0").is_err());
        assert!(parse_core_mask("xyz").is_err());
    }

    /// Ids beyond RTE_MAX_LCORE are refused before a range is expanded:
    /// these would take gigabytes and minutes otherwise.
    #[test]
    fn lcore_ids_are_bounded_by_rte_max_lcore() {
        let last = RTE_MAX_LCORE - 1;
        assert_eq!(
            parse_core_list(&format!("0-{last}")).unwrap().len(),
            RTE_MAX_LCORE as usize
        );
        let t = std::time::Instant::now();
        for list in [
            "0-4294967295",
            "0-4294967296",
            "0-99999999999999999999",
            "128",
            "1,2,128-129",
        ] {
            let err = parse_core_list(list).unwrap_err();
            assert!(err.contains("RTE_MAX_LCORE 128"), "{list}: {err}");
        }
        let err = parse_lcores_map("(0-4294967295)@0").unwrap_err();
        assert!(err.contains("RTE_MAX_LCORE"), "{err}");
        let err = parse_lcores_map("1@2,(4,300)@6").unwrap_err();
        assert!(err.contains("lcore id 300"), "{err}");
        assert_eq!(
            parse_core_mask(&format!("0x8{}", "0".repeat(31))).unwrap(),
            set(&[127])
        );
        let err = parse_core_mask(&format!("0x1{}", "0".repeat(32))).unwrap_err();
        assert!(err.contains("RTE_MAX_LCORE"), "{err}");
        let err = parse_core_mask(&"f".repeat(100_000)).unwrap_err();
        assert!(err.contains("RTE_MAX_LCORE"), "{err}");
        let err = eal_cores(&args(&["-l", "0-1", "--main-lcore", "4294967295"])).unwrap_err();
        assert_eq!(err[0].0, 3);
        assert!(err[0].1.contains("RTE_MAX_LCORE"), "{:?}", err[0]);
        // Guards against expanding a huge range (gigabytes, minutes), not a
        // speed claim: these take milliseconds, the bound is far above that.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn option_forms() {
        for a in [
            args(&["-l", "0-1"]),
            args(&["-l0-1"]),
            args(&["--lcores", "0,1"]),
            args(&["--lcores=0@0,1@1"]),
            args(&["-c", "0x3"]),
            args(&["-c3"]),
        ] {
            let cores = eal_cores(&a).unwrap().unwrap();
            assert_eq!(cores.lcores, set(&[0, 1]), "{a:?}");
            assert_eq!(cores.main, 0, "{a:?}");
        }
    }

    #[test]
    fn main_lcore() {
        let a = args(&["--no-huge", "-l", "0-3", "--main-lcore", "2"]);
        assert_eq!(eal_cores(&a).unwrap().unwrap().main, 2);
        assert_eq!(eal_main_lcore(&a), Some(2));
        let a = args(&["-l", "2-3", "--main-lcore=3"]);
        assert_eq!(eal_main_lcore(&a), Some(3));
        assert_eq!(eal_main_lcore(&args(&["-l", "4,2"])), Some(2));
        assert_eq!(eal_main_lcore(&args(&["--no-huge"])), None);
        assert_eq!(eal_main_lcore(&args(&["--main-lcore", "1"])), Some(1));
        let err = eal_cores(&args(&["-l", "0-1", "--main-lcore", "5"])).unwrap_err();
        assert_eq!(err[0].0, 3);
        assert!(err[0].1.contains("not in the EAL core list"));
    }

    #[test]
    fn no_list_and_errors() {
        assert_eq!(
            eal_cores(&args(&["--no-huge", "-m", "512", "--log-level", "8"])).unwrap(),
            None
        );
        let err = eal_cores(&args(&["-l"])).unwrap_err();
        assert_eq!(err[0].0, 0);
        let err = eal_cores(&args(&["--no-huge", "-l", "x"])).unwrap_err();
        assert_eq!(err[0].0, 2);
    }
}
