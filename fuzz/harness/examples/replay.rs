//! Runs fuzz inputs through the harness and prints what they break:
//! `cargo run -p lb-fuzz-harness --example replay -- pipeline FILE...`
//! (exit status 1 if any input breaks an invariant).

use lb_fuzz_harness::Target;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(target) = Target::ALL.into_iter().find(|t| t.name() == name) else {
        eprintln!("usage: replay pipeline|wire|sync FILE...");
        std::process::exit(2);
    };
    let mut bad = 0;
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (v, summary) = match target {
            Target::Pipeline => lb_fuzz_harness::driver::run_with_summary(&data),
            _ => (target.run(&data), String::new()),
        };
        if v.is_empty() {
            println!("{path}: ok {summary}");
        } else {
            bad += 1;
            for x in &v.list {
                println!("{path}: {x}");
            }
        }
    }
    std::process::exit(i32::from(bad > 0));
}
