//! The `config` target's seeds: the shipped examples (`fuzz/corpus/config/
//! seed-*.toml`, copies of `examples/*.toml`) and the pipeline target's own
//! configs are accepted, compile, and break no invariant, so that fuzzing
//! starts from files that reach the compile step.

use std::path::Path;

use lb_config::Config;
use lb_fuzz_harness::{configs, Target};

#[test]
fn the_example_seeds_are_valid_and_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/config");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&examples).expect("examples/") {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let name = format!("seed-{}", path.file_name().unwrap().to_str().unwrap());
        let seed = std::fs::read(dir.join(&name)).unwrap_or_else(|_| {
            panic!(
                "fuzz/corpus/config/{name} is missing: copy {} there",
                path.display()
            )
        });
        assert_eq!(
            seed,
            std::fs::read(&path).unwrap(),
            "fuzz/corpus/config/{name} differs from {}: copy it again",
            path.display()
        );
        let text = String::from_utf8(seed).unwrap();
        if let Err(e) = Config::parse(&text) {
            panic!("{name} is refused: {e}");
        }
        let v = Target::Config.run(text.as_bytes());
        assert!(v.is_empty(), "{name}: {:?}", v.list);
        n += 1;
    }
    assert!(n >= 5, "only {n} example configs found");
}

#[test]
fn the_pipeline_targets_configs_are_clean() {
    for t in 0..configs::TOPOLOGIES {
        for v in 0..configs::VARIANTS {
            let text = configs::config_text(t, v);
            let found = Target::Config.run(text.as_bytes());
            assert!(found.is_empty(), "config {t}/{v}: {:?}", found.list);
        }
    }
}

#[test]
fn a_refused_config_is_checked_too() {
    // Not a seed: that the invariants look at errors (a config refused
    // with its key named breaks nothing).
    let v = Target::Config.run(b"[flows]\ncapacity = \"lots\"\n");
    assert!(v.is_empty(), "{:?}", v.list);
    let v = Target::Config.run(b"[[services]\n");
    assert!(v.is_empty(), "{:?}", v.list);
}
