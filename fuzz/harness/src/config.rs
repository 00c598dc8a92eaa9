//! The `config` target: `lb.toml` text, as whoever can write the file (or
//! send `lb-appliance ctl` a change) might give it, through what a start,
//! a `--check` and a reload do with it: [`Config::parse`] (TOML, schema,
//! validation), then, for a config it accepts, [`Snapshot::compile`] with
//! one MAC per port, twice with the same ids (a start, then a reload).
//!
//! The input is the file's bytes; invalid UTF-8 is replaced (the appliance
//! refuses such a file when it reads it, so only text gets further).
//!
//! # Invariants
//! - no panic, anywhere (libFuzzer keeps the input);
//! - `config.error`: a refused config has at least one error, and each
//!   names where (a key path such as `services[0].reals[1].port`, or the
//!   file for a syntax error) and what, each on one line;
//! - `config.deterministic`: the same text parses the same way twice;
//! - `config.compile`: a config that validation accepted compiles (with
//!   every real up, and with every real down), so a start or a reload never
//!   fails after `--check` said the file was good;
//! - `config.reload-ids`: compiled again with the ids of the first (a
//!   reload of the same file), every real keeps its id (its counters and
//!   flows follow it).

use lb_config::{Config, MacAddr};
use lb_core::snapshot::{Ids, Snapshot};

use crate::Violations;

/// The name syntax errors are reported against.
const SOURCE: &str = "lb.toml";

pub fn run(data: &[u8]) -> Violations {
    let mut v = Violations::default();
    let text = String::from_utf8_lossy(data);
    let parsed = Config::parse_named(&text, SOURCE);
    let again = Config::parse_named(&text, SOURCE);
    let same = match (&parsed, &again) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.0 == b.0,
        _ => false,
    };
    if !same {
        v.add(
            "config.deterministic",
            format!(
                "{:?}\nthen\n{:?}",
                parsed.as_ref().err(),
                again.as_ref().err()
            ),
        );
    }
    match parsed {
        Err(errors) => check_errors(&errors.0, &mut v),
        Ok(config) => check_compiles(&config, &mut v),
    }
    v
}

fn check_errors(errors: &[lb_config::ConfigError], v: &mut Violations) {
    if errors.is_empty() {
        v.add("config.error", "refused with no error".to_string());
    }
    for e in errors {
        let one_line = |s: &str| !s.trim().is_empty() && !s.contains('\n');
        if !one_line(&e.path) || e.message.trim().is_empty() {
            v.add(
                "config.error",
                format!("an error without a place or a message: {e:?}"),
            );
        }
    }
}

fn check_compiles(config: &Config, v: &mut Violations) {
    let macs: Vec<MacAddr> = (0..config.ports.len())
        .map(|i| MacAddr([0x02, 0, 0, 0, (i >> 8) as u8, i as u8]))
        .collect();
    let mut ids = Ids::default();
    let first = match Snapshot::compile(config, &macs, 1, &mut ids, |_, _, _| true) {
        Ok(s) => s,
        Err(e) => {
            v.add("config.compile", format!("accepted, then: {e}"));
            return;
        }
    };
    if let Err(e) = Snapshot::compile(config, &macs, 2, &mut Ids::default(), |_, _, _| false) {
        v.add(
            "config.compile",
            format!("accepted, then with every real down: {e}"),
        );
    }
    match Snapshot::compile(config, &macs, 3, &mut ids, |_, _, _| true) {
        Err(e) => v.add("config.compile", format!("accepted, then on reload: {e}")),
        Ok(second) => {
            let real_ids = |s: &Snapshot| -> Vec<(String, u32)> {
                s.services
                    .iter()
                    .flat_map(|svc| {
                        svc.reals
                            .iter()
                            .map(move |r| (format!("{}/{}:{}", svc.name, r.address, r.port), r.id))
                    })
                    .collect()
            };
            if real_ids(&first) != real_ids(&second) {
                v.add(
                    "config.reload-ids",
                    format!("{:?}\nthen\n{:?}", real_ids(&first), real_ids(&second)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::ConfigError;

    #[test]
    fn an_error_without_its_place_breaks_the_invariant() {
        let mut v = Violations::default();
        check_errors(&[ConfigError::new("", "bad")], &mut v);
        check_errors(&[ConfigError::new("flows.capacity\nx", "bad")], &mut v);
        check_errors(&[], &mut v);
        assert_eq!(v.list.len(), 3, "{:?}", v.list);
        let mut ok = Violations::default();
        check_errors(&[ConfigError::new("flows.capacity", "bad")], &mut ok);
        assert!(ok.is_empty());
    }
}
