//! Generates the DPDK bindings from the headers pkg-config reports for
//! `libdpdk`, and compiles `shim/shim.c`, which gives the `static inline`
//! functions and the thread-local `rte_errno` a linkable symbol.
//!
//! Linking is dynamic by default: the Debian build of the EAL loads its
//! driver plugins (net_af_packet, net_pcap, ...) from its plugin folder by
//! itself. With `LB_DPDK_LINK=static` in the build's environment DPDK's
//! static archives are linked instead, every driver in them (BENCHMARKS.md,
//! "Session 46": some 26 instructions a forwarded packet fewer in the
//! worker, mostly `__tls_get_addr`, which a shared library's thread-local
//! variables cost on every access).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LB_DPDK_LINK");

    let link_static = match env::var("LB_DPDK_LINK").as_deref() {
        Err(_) | Ok("" | "dynamic") => false,
        Ok("static") => true,
        Ok(other) => panic!("LB_DPDK_LINK is \"{other}\": it takes \"static\" or \"dynamic\""),
    };
    let dpdk = match pkg_config::Config::new()
        .atleast_version("21.11")
        .cargo_metadata(!link_static)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "DPDK not found by pkg-config ({e}).\n\
             Install it with: apt-get install libdpdk-dev dpdk pkg-config clang libclang-dev\n\
             (or run scripts/install-deps.sh)"
        ),
    };

    // `pkg-config --cflags libdpdk` carries `-include rte_config.h` and
    // `-march=...`: every flag must reach both clang (bindgen) and cc.
    let flags = split_flags(&pkg_config_output(&["--cflags", "libdpdk"]));

    let mut build = cc::Build::new();
    build.file("shim/shim.c").include("shim").warnings(false);
    for f in &flags {
        build.flag(f);
    }
    for p in &dpdk.include_paths {
        build.include(p);
    }
    build.compile("lbdpdkshim");

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&flags)
        .clang_args(
            dpdk.include_paths
                .iter()
                .map(|p| format!("-I{}", p.display())),
        )
        .allowlist_function("rte_.*")
        .allowlist_function("lb_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("RING_F_.*")
        // Both fail to compile as generated: a packed type containing an
        // aligned one, and a type without Debug. We never touch them.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen could not generate the DPDK bindings");

    if link_static {
        link_static_libs();
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// Splits the cflags string, keeping `-include rte_config.h` as two
/// arguments, which both clang and cc accept.
fn split_flags(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Links DPDK's static archives (`pkg-config --static --libs libdpdk`)
/// instead of its shared libraries: every archive whole (its drivers
/// register themselves from constructors nothing else refers to), the
/// system libraries they need dynamically.
fn link_static_libs() {
    let libs = pkg_config_output(&["--static", "--libs", "libdpdk"]);
    let mut seen = std::collections::HashSet::new();
    for f in libs.split_whitespace() {
        if let Some(path) = f.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={path}");
        } else if let Some(name) = f.strip_prefix("-l:lib").and_then(|n| n.strip_suffix(".a")) {
            if seen.insert(name.to_owned()) {
                println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={name}");
            }
        } else if let Some(name) = f.strip_prefix("-l") {
            // The shared builds of what is linked whole above, and
            // libsystemd (no development package needed: nothing here
            // calls it).
            if name.starts_with("rte_") || name == "systemd" {
                continue;
            }
            if seen.insert(name.to_owned()) {
                println!("cargo:rustc-link-lib=dylib={name}");
            }
        }
    }
    // Debian's libdpdk.pc names its archives without a folder (`-l:` in
    // the linker's default path): rustc looks for them in pkg-config's.
    let libdir = pkg_config::get_variable("libdpdk", "libdir").expect("libdpdk's libdir");
    println!("cargo:rustc-link-search=native={libdir}");
}

/// What `pkg-config ARGS` prints.
fn pkg_config_output(args: &[&str]) -> String {
    let out = std::process::Command::new("pkg-config")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("pkg-config {}: {e}", args.join(" ")));
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8")
}
