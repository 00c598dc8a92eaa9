//! Replays every committed fuzz input through the same checks the fuzz
//! targets run, on stable, in the normal `cargo test`:
//! - `fuzz/corpus/<target>/`: the seed corpus (must exist and not be
//!   empty); no input may break an invariant (those in `KNOWN_OPEN` aside).
//! - `fuzz/regressions/<target>/`: every crash fuzzing ever found. Each
//!   must now pass, unless `fuzz/regressions/known-open.txt` lists it with
//!   the invariant it still breaks (reported, not yet fixed): then it must
//!   break exactly that one, so that a fix is noticed and the line removed.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use lb_fuzz_harness::{Target, KNOWN_OPEN};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("a readable folder").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') || n.ends_with(".md"))
        })
        .collect();
    v.sort();
    v
}

/// `<target>/<file>` -> the invariant id it is known to break.
fn known_open() -> BTreeMap<String, String> {
    let path = fuzz_dir().join("regressions/known-open.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let file = it.next().expect("a file").to_string();
            let id = it
                .next()
                .unwrap_or_else(|| panic!("known-open.txt: {l:?} names no invariant"))
                .to_string();
            (file, id)
        })
        .collect()
}

/// The ids an input breaks, or the panic it causes.
fn run(target: Target, path: &Path) -> Result<Vec<&'static str>, String> {
    let data = std::fs::read(path).expect("a readable file");
    catch_unwind(AssertUnwindSafe(|| target.run(&data)))
        .map(|v| {
            for x in &v.list {
                eprintln!("{}: {x}", path.display());
            }
            v.ids()
        })
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string())
        })
}

#[test]
fn corpus_replays_clean() {
    let mut failures = Vec::new();
    for target in Target::ALL {
        let dir = fuzz_dir().join("corpus").join(target.name());
        let inputs = files(&dir);
        assert!(
            !inputs.is_empty(),
            "{} is missing or empty: the {} target has no corpus",
            dir.display(),
            target.name()
        );
        for path in inputs {
            match run(target, &path) {
                Ok(ids) => {
                    let new: Vec<_> = ids.iter().filter(|id| !KNOWN_OPEN.contains(id)).collect();
                    if !new.is_empty() {
                        failures.push(format!("{}: breaks {new:?}", path.display()));
                    }
                }
                Err(p) => failures.push(format!("{}: panics: {p}", path.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn regressions_stay_fixed() {
    let known = known_open();
    let mut seen = 0;
    let mut failures = Vec::new();
    for target in Target::ALL {
        let dir = fuzz_dir().join("regressions").join(target.name());
        for path in files(&dir) {
            let name = format!(
                "{}/{}",
                target.name(),
                path.file_name().unwrap().to_string_lossy()
            );
            let expected = known.get(&name);
            if let Some(id) = expected {
                assert!(
                    KNOWN_OPEN.contains(&id.as_str()),
                    "known-open.txt lists {name} as breaking {id}, which KNOWN_OPEN does not list"
                );
                seen += 1;
            }
            match (run(target, &path), expected) {
                (Ok(ids), None) if ids.is_empty() => {}
                (Ok(ids), None) => failures.push(format!("{name}: breaks {ids:?} again")),
                (Ok(ids), Some(id)) if ids.iter().any(|x| x == id) => {
                    let other: Vec<_> = ids.iter().filter(|x| !KNOWN_OPEN.contains(x)).collect();
                    if !other.is_empty() {
                        failures.push(format!("{name}: breaks {other:?} too"));
                    }
                }
                (Ok(ids), Some(id)) => failures.push(format!(
                    "{name}: no longer breaks {id} (breaks {ids:?}): fixed? remove its line from \
                     fuzz/regressions/known-open.txt and {id} from KNOWN_OPEN if nothing else needs it"
                )),
                (Err(p), _) => failures.push(format!("{name}: panics: {p}")),
            }
        }
    }
    assert_eq!(
        seen,
        known.len(),
        "known-open.txt names files that are not in fuzz/regressions/"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
