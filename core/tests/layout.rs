//! The shape lb-core promises, checked so that it stays: no DPDK anywhere in
//! its dependencies, no `unsafe` at all (the DPDK wrapper supplies prefetch
//! and huge-page advice), and no header field
//! read or written by raw offset outside `wire/`.

use std::fs;
use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn lb_core_does_not_depend_on_dpdk() {
    let manifest = fs::read_to_string(manifest_dir().join("Cargo.toml")).unwrap();
    assert!(
        !manifest.to_lowercase().contains("dpdk-sys"),
        "core/Cargo.toml must not name dpdk-sys"
    );
    assert!(
        manifest.contains("unsafe_code = \"forbid\""),
        "core/Cargo.toml forbids unsafe code crate-wide"
    );
    assert!(
        !manifest_dir().join("build.rs").exists(),
        "lb-core has no build script (it would be the way libdpdk creeps back)"
    );
}

#[test]
fn no_unsafe_anywhere() {
    let mut files = Vec::new();
    rust_files(&manifest_dir().join("src"), &mut files);
    let mut offenders = Vec::new();
    for f in &files {
        for (i, line) in fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // Not even an attribute that allows it: the crate forbids it in
            // Cargo.toml; the house rule keeps `unsafe` in the DPDK wrapper
            // and dpdk-sys.
            if code.contains("unsafe") {
                offenders.push(format!("{}:{}: {line}", f.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe in lb-core:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn header_fields_are_touched_only_through_wire() {
    let mut files = Vec::new();
    rust_files(&manifest_dir().join("src"), &mut files);
    // Byte-order helpers and indexing with a literal offset are how a raw
    // field access looks; `wire/` is where they belong.
    let patterns = [
        "from_be_bytes",
        "to_be_bytes",
        "read_u16",
        "read_u32",
        "write_u16",
        "write_u32",
    ];
    let mut offenders = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(manifest_dir()).unwrap();
        if rel.starts_with("src/wire") {
            continue;
        }
        for (i, line) in fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // A packet's bytes indexed at a literal offset: `data()[30]`.
            let literal_index = ["data()[", "data_mut()["].iter().any(|p| {
                code.split(p)
                    .skip(1)
                    .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            });
            if patterns.iter().any(|p| code.contains(p)) || literal_index {
                offenders.push(format!("{}:{}: {line}", rel.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "raw header offsets outside wire/:\n{}",
        offenders.join("\n")
    );
}
