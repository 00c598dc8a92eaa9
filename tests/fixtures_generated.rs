//! The golden fixtures are what their generators make: every
//! `scripts/gen-*-fixtures.py` (scapy, the encoder that is not ours) run
//! into a scratch folder gives back `tests/fixtures/` byte for byte. A
//! fixture edited by hand, or a generator changed without its output
//! committed, fails here rather than pinning bytes nobody can rebuild.
//! Needs Debian's /usr/bin/python3 with scapy (`scripts/install-deps.sh --test` installs it);
//! skipped without it, unless LB_REQUIRE_PRIVILEGED_TESTS=1 (as in CI).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, by its path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
                out.insert(rel, fs::read(&path).expect("readable fixture"));
            }
        }
    }
    out
}

fn scapy_available() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import scapy.all"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
            panic!("python3 with scapy is needed (scripts/install-deps.sh --test installs it)");
        }
        eprintln!("SKIPPED fixtures_are_what_the_generators_make: no python3 with scapy");
    }
    ok
}

#[test]
fn fixtures_are_what_the_generators_make() {
    if !scapy_available() {
        return;
    }
    let scratch = common::TempDir::new("fixtures");
    let mut generators: Vec<PathBuf> = fs::read_dir(root().join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gen-") && n.ends_with("-fixtures.py"))
        })
        .collect();
    generators.sort();
    assert!(generators.len() >= 4, "generators: {generators:?}");
    for g in &generators {
        let out = Command::new("/usr/bin/python3")
            .arg(g)
            .arg(&scratch.0)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}: {}",
            g.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let made = files(&scratch.0);
    let mut committed = files(&root().join("tests/fixtures"));
    // The folder's own documentation is written by hand.
    committed.remove(Path::new("README.md"));
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&made),
        names(&committed),
        "the generators make exactly the committed fixture files"
    );
    for (path, bytes) in &made {
        assert!(
            committed[path] == *bytes,
            "tests/fixtures/{} differs from what its generator makes now: \
             run the generators (scripts/gen-*-fixtures.py) and commit the result",
            path.display()
        );
    }
}
