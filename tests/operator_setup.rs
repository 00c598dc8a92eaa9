//! The operator-side set-up: `scripts/bind-nics.sh`, the systemd unit
//! `packaging/systemd/lb-appliance.service` and `scripts/install-service.sh`,
//! tested as far as a machine without DPDK-capable NICs, IOMMU or loadable
//! modules allows.
//!
//! What runs for real and what against stubs:
//!
//! - for real: argument parsing and `--help` of both scripts; the hugepage
//!   part of `bind-nics.sh` against the real `/sys` (root only: it reserves
//!   4 more 2 MB pages, mounts hugetlbfs if no 2 MB mount exists, and the
//!   guard puts both back, also when the test fails); `--persist` writing
//!   its sysctl file (into a temporary `SYSCTL_DIR`); `systemd-analyze
//!   verify` of the unit; `install-service.sh` into a `DESTDIR`; the
//!   `--check` the unit's `ExecStartPre` runs.
//! - against stubs: NIC resolution, the SSH-route refusal, the IOMMU check,
//!   driver loading and binding/unbinding. They run on a fake sysfs tree in
//!   a temporary folder (`SYSFS`), with a stub `dpdk-devbind.py` (a shell
//!   script that logs its arguments, prints a fake `--status` and moves the
//!   fake `driver` link as the real one would) and a stub `modprobe`,
//!   because this machine has no NIC DPDK can take and cannot load modules.
//!   The route of the SSH session is given through `IP_ROUTE_GET`.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PCI: &str = "0000:00:09.0";

fn script(name: &str) -> PathBuf {
    Path::new(ROOT).join("scripts").join(name)
}

/// A command running `scripts/NAME` with bash, with none of the overrides
/// the scripts read inherited from the caller's environment.
fn script_cmd(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(script(name));
    for var in [
        "DPDK_DEVBIND",
        "MODPROBE",
        "SYSFS",
        "STATE_DIR",
        "SYSCTL_DIR",
        "IP_ROUTE_GET",
        "IP_DEFAULT_ROUTES",
        "PROC",
        "APPLIANCE_PROC",
        "SSH_CONNECTION",
        "SSH_CLIENT",
        "DESTDIR",
        "LB_BINARY",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn assert_ok(&self) -> &Run {
        assert_eq!(self.code, 0, "expected success:\n{}", self.show());
        self
    }

    fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "expected exit {code}:\n{}", self.show());
        self
    }

    fn assert_stderr_has(&self, needles: &[&str]) -> &Run {
        for n in needles {
            assert!(self.stderr.contains(n), "{n:?} missing:\n{}", self.show());
        }
        self
    }
}

fn run(mut c: Command) -> Run {
    Run::of(c.output().expect("run bash"))
}

fn bind_nics(args: &[&str]) -> Run {
    let mut c = script_cmd("bind-nics.sh");
    c.args(args);
    run(c)
}

/// Writes an executable file through a child shell, so that no descriptor
/// open for writing on it lingers in this (multi-threaded) process while a
/// test executes it ("text file busy").
fn write_executable(path: &Path, text: &str) {
    let out = Command::new("sh")
        .args([
            "-c",
            "printf '%s' \"$TEXT\" > \"$1\" && chmod 755 \"$1\"",
            "sh",
        ])
        .arg(path)
        .env("TEXT", text)
        .output()
        .expect("sh");
    assert!(out.status.success(), "cannot write {}", path.display());
}

// ------------------------------------------------------------------ arguments

#[test]
fn help_lists_every_option() {
    let r = bind_nics(&["--help"]);
    r.assert_ok();
    for opt in [
        "--hugepages",
        "--hugepage-size",
        "--persist",
        "--no-hugepages",
        "--driver",
        "vfio-pci",
        "uio_pci_generic",
        "--force",
        "--status",
        "--unbind",
        "--dry-run",
        "--help",
        "default_hugepagesz=1G hugepagesz=1G hugepages=N",
        "80-lb-appliance-hugepages.conf",
        "nic-drivers",
    ] {
        assert!(r.stdout.contains(opt), "{opt} not in --help:\n{}", r.stdout);
    }
    assert_eq!(bind_nics(&["-h"]).stdout, r.stdout);

    let mut c = script_cmd("install-service.sh");
    c.arg("--help");
    let r = run(c);
    r.assert_ok();
    for opt in ["--prefix", "--no-enable", "DESTDIR", "LB_BINARY"] {
        assert!(r.stdout.contains(opt), "{opt} not in --help:\n{}", r.stdout);
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, says) in [
        (&["--bogus"][..], "unknown option --bogus"),
        (
            &["--hugepage-size", "3M"],
            "--hugepage-size must be 2M or 1G, not '3M'",
        ),
        (&["--hugepage-size"], "--hugepage-size needs a value"),
        (&["--hugepages", "many"], "--hugepages needs a whole number"),
        (
            &["--driver", "igb_uio", PCI],
            "--driver must be vfio-pci or uio_pci_generic",
        ),
        (&["--status", PCI], "--status takes no NIC"),
        (&["--status", "--unbind"], "exclude each other"),
        (&["--no-hugepages"], "nothing to do"),
    ] {
        let r = bind_nics(args);
        r.assert_code(2).assert_stderr_has(&["bind-nics: ", says]);
        assert!(
            r.stderr.lines().all(|l| l.starts_with("bind-nics: ")),
            "every message starts with bind-nics: {}",
            r.show()
        );
    }

    let mut c = script_cmd("install-service.sh");
    c.arg("--bogus");
    run(c)
        .assert_code(2)
        .assert_stderr_has(&["install-service: unknown argument --bogus"]);
    let mut c = script_cmd("install-service.sh");
    c.args(["--prefix", "relative/dir"]);
    run(c)
        .assert_code(2)
        .assert_stderr_has(&["--prefix must be an absolute path"]);
}

// ------------------------------------------------------------------ hugepages, for real

const HP_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

fn hugetlbfs_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == "hugetlbfs").then(|| format!("{} {}", f[1], f[3]))
        })
        .collect()
}

fn nr_hugepages() -> u64 {
    std::fs::read_to_string(HP_2M)
        .expect(HP_2M)
        .trim()
        .parse()
        .unwrap()
}

/// Puts back, when dropped, the 2 MB hugepage count and the hugetlbfs mounts
/// as they were when it was made (unmounting what the script mounted and
/// removing the folder it created).
struct HugepageGuard {
    count: u64,
    mounts: Vec<String>,
    dirs: Vec<(PathBuf, bool)>,
}

impl HugepageGuard {
    fn new() -> HugepageGuard {
        HugepageGuard {
            count: nr_hugepages(),
            mounts: hugetlbfs_mounts(),
            dirs: ["/dev/hugepages", "/dev/hugepages-2M"]
                .iter()
                .map(|d| (PathBuf::from(d), Path::new(d).exists()))
                .collect(),
        }
    }
}

impl Drop for HugepageGuard {
    fn drop(&mut self) {
        for m in hugetlbfs_mounts() {
            if !self.mounts.contains(&m) {
                let point = m.split(' ').next().unwrap().to_string();
                let _ = Command::new("umount").arg(&point).output();
            }
        }
        for (dir, existed) in &self.dirs {
            if !existed {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let _ = std::fs::write(HP_2M, format!("{}\n", self.count));
    }
}

/// Runs for real, as root: reserves 4 more 2 MB hugepages on this machine
/// through the real /sys (no NIC named, so nothing else is touched), checks
/// the kernel's count and the hugetlbfs mount, then `--persist` into a
/// temporary SYSCTL_DIR. The guard restores the count and the mounts.
#[test]
fn hugepages_for_real() {
    if !common::privileged("hugepages_for_real") {
        return;
    }
    if !Path::new(HP_2M).exists() {
        panic!("{HP_2M} is missing: this kernel has no 2 MB hugepages");
    }
    let tmp = TempDir::new("ops-hp");
    let sysctl_dir = tmp.path("sysctl.d");
    let guard = HugepageGuard::new();
    let want = guard.count + 4;
    let want_s = want.to_string();

    let mut c = script_cmd("bind-nics.sh");
    c.args(["--hugepages", &want_s])
        .env("SYSCTL_DIR", &sysctl_dir);
    let ran = run(c);
    ran.assert_ok()
        .assert_stderr_has(&[&format!("{want} hugepages of 2M reserved")]);
    assert_eq!(nr_hugepages(), want, "the kernel's count after the script");
    // The mounts the script made (the guard saw those from before): one of
    // 2M pages where there was none, and none where there was one.
    let new: Vec<String> = hugetlbfs_mounts()
        .into_iter()
        .filter(|m| !guard.mounts.contains(m))
        .collect();
    if guard.mounts.iter().any(|m| m.contains("pagesize=2M")) {
        eprintln!(
            "a 2M hugetlbfs mount was there before ({:?}): the script must add none",
            guard.mounts
        );
        assert!(new.is_empty(), "the script stacked another mount: {new:?}");
    } else {
        assert!(
            new.len() == 1 && new[0].contains("pagesize=2M"),
            "the script made one hugetlbfs mount of 2M pages: {new:?} (before: {:?})",
            guard.mounts
        );
        let point = new[0].split(' ').next().unwrap();
        ran.assert_stderr_has(&[&format!("mounted hugetlbfs (pagesize=2M) on {point}")]);
    }
    assert!(
        !sysctl_dir.exists(),
        "nothing is persisted without --persist"
    );

    // Again, with --persist: the count stays, the sysctl file is written.
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--hugepages", &want_s, "--persist"])
        .env("SYSCTL_DIR", &sysctl_dir);
    run(c).assert_ok().assert_stderr_has(&["wrote "]);
    assert_eq!(nr_hugepages(), want);
    let conf = std::fs::read_to_string(sysctl_dir.join("80-lb-appliance-hugepages.conf"))
        .expect("the sysctl file");
    let settings: Vec<&str> = conf
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(settings, [format!("vm.nr_hugepages = {want}")], "{conf}");

    drop(guard);
    assert_eq!(
        nr_hugepages(),
        want - 4,
        "the guard restored the previous count"
    );
}

/// Runs against a fake sysfs (only its hugepage counts): --dry-run prints
/// the write, the sysctl file and the mount, and changes nothing; 1G
/// --persist explains the kernel command line.
#[test]
fn hugepages_dry_run_and_1g_persist() {
    let tmp = TempDir::new("ops-hpdry");
    let sysfs = tmp.path("sys");
    for kb in ["2048", "1048576"] {
        let d = sysfs.join(format!("kernel/mm/hugepages/hugepages-{kb}kB"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("nr_hugepages"), "0\n").unwrap();
    }
    let sysctl_dir = tmp.path("sysctl.d");

    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run", "--hugepages", "16", "--persist"])
        .env("SYSFS", &sysfs)
        .env("SYSCTL_DIR", &sysctl_dir);
    let r = run(c);
    r.assert_ok();
    let count = sysfs.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
    for line in [
        format!("+ echo 16 > {}", count.display()),
        format!(
            "+ cat > {}",
            sysctl_dir.join("80-lb-appliance-hugepages.conf").display()
        ),
        "vm.nr_hugepages = 16".to_string(),
    ] {
        assert!(r.stdout.contains(&line), "{line:?} missing:\n{}", r.show());
    }
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "0\n");
    assert!(!sysctl_dir.exists(), "--dry-run wrote the sysctl file");

    let mut c = script_cmd("bind-nics.sh");
    c.args([
        "--dry-run",
        "--hugepages",
        "4",
        "--hugepage-size",
        "1G",
        "--persist",
    ])
    .env("SYSFS", &sysfs)
    .env("SYSCTL_DIR", &sysctl_dir);
    run(c).assert_ok().assert_stderr_has(&[
        "default_hugepagesz=1G hugepagesz=1G hugepages=4",
        "GRUB_CMDLINE_LINUX",
        "/etc/default/grub",
        "update-grub",
    ]);
    assert!(!sysctl_dir.exists(), "1G pages are not persisted by sysctl");

    // Found in audit: the default of 1024 pages meant 1 TiB of 1G pages.
    // Not given, it is 2 GB's worth of either size.
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run", "--hugepage-size", "1G"])
        .env("SYSFS", &sysfs);
    let r = run(c);
    r.assert_ok();
    let count_1g = sysfs.join("kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages");
    assert!(
        r.stdout
            .contains(&format!("+ echo 2 > {}", count_1g.display())),
        "{}",
        r.show()
    );
    // Nor fewer than are reserved already, unless given (found in audit: a
    // run to bind one more NIC shrank the running appliance's pages).
    std::fs::write(&count, "4096\n").unwrap();
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run"]).env("SYSFS", &sysfs);
    let r = run(c);
    r.assert_ok();
    assert!(
        r.stdout
            .contains(&format!("+ echo 4096 > {}", count.display())),
        "{}",
        r.show()
    );
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run", "--hugepages", "16"])
        .env("SYSFS", &sysfs);
    let r = run(c);
    assert!(
        r.stdout
            .contains(&format!("+ echo 16 > {}", count.display())),
        "given, it is set as is: {}",
        r.show()
    );
    std::fs::write(&count, "0\n").unwrap();
    // More than three quarters of the memory is refused (PROC stands for
    // /proc: a machine of 4 GB).
    let proc_dir = tmp.path("proc");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(
        proc_dir.join("meminfo"),
        "MemTotal:        4194304 kB\nHugepagesize:       2048 kB\n",
    )
    .unwrap();
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run", "--hugepages", "2048"])
        .env("SYSFS", &sysfs)
        .env("PROC", &proc_dir);
    run(c).assert_code(1).assert_stderr_has(&[
        "4096 MB",
        "three quarters",
        "4096 MB: ask for fewer",
    ]);
    // --persist of 2M pages where the default size is 1G: vm.nr_hugepages
    // would count 1G pages (found in audit).
    std::fs::write(
        proc_dir.join("meminfo"),
        "MemTotal:        33554432 kB\nHugepagesize:    1048576 kB\n",
    )
    .unwrap();
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--dry-run", "--hugepages", "16", "--persist"])
        .env("SYSFS", &sysfs)
        .env("SYSCTL_DIR", &sysctl_dir)
        .env("PROC", &proc_dir);
    run(c).assert_code(1).assert_stderr_has(&[
        "default hugepage size here is 1048576 kB",
        "hugepagesz=2M hugepages=16",
    ]);

    // A size the machine does not have is a failure that says what to use.
    std::fs::remove_dir_all(sysfs.join("kernel/mm/hugepages/hugepages-1048576kB")).unwrap();
    let mut c = script_cmd("bind-nics.sh");
    c.args(["--hugepage-size", "1G"]).env("SYSFS", &sysfs);
    run(c).assert_code(1).assert_stderr_has(&[
        "bind-nics: ",
        "no 1G hugepages",
        "--hugepage-size 2M",
    ]);
}

// ------------------------------------------------------------------ binding, against stubs

/// A fake sysfs with one PCI NIC, 0000:00:09.0, known to the kernel as
/// eth9 on driver e1000e, a second one (0000:00:08.0, eth8, ixgbe), a
/// virtio-net one (0000:00:05.0, eth5 on virtio3, virtio-pci), a virtual
/// interface (veth0), and IOMMU groups or not; a stub
/// dpdk-devbind.py and a stub modprobe that log their arguments.
struct Fake {
    dir: TempDir,
    sysfs: PathBuf,
    state: PathBuf,
    devbind_log: PathBuf,
    modprobe_log: PathBuf,
}

const STUB_DEVBIND: &str = r#"#!/bin/sh
# Stub of dpdk-devbind.py: logs its arguments; --status prints a fixed
# listing; -b DRIVER PCI moves the fake sysfs driver link like the real one.
echo "$*" >> "$DEVBIND_LOG"
if [ "$1" = --status ]; then
    echo "Network devices using DPDK-compatible driver"
    echo "============================================"
    echo "0000:00:09.0 'Fake 82574L Gigabit Network Connection 10d3' drv=vfio-pci unused=vfio-pci,e1000e"
    exit 0
fi
while [ $# -gt 0 ]; do
    case "$1" in
    -b) drv=$2; pci=$3; shift 3 ;;
    *) shift ;;
    esac
done
mkdir -p "$SYSFS/bus/pci/drivers/$drv"
ln -sfn "../../../bus/pci/drivers/$drv" "$SYSFS/bus/pci/devices/$pci/driver"
"#;

const STUB_MODPROBE: &str = "#!/bin/sh\necho \"$*\" >> \"$MODPROBE_LOG\"\n";

impl Fake {
    fn new(tag: &str, iommu: bool) -> Fake {
        let dir = TempDir::new(tag);
        let sysfs = dir.path("sys");
        let mk = |p: &str| std::fs::create_dir_all(sysfs.join(p)).unwrap();
        for (pci, iface, drv) in [(PCI, "eth9", "e1000e"), ("0000:00:08.0", "eth8", "ixgbe")] {
            let dev = format!("devices/pci0000:00/{pci}");
            mk(&format!("{dev}/net/{iface}"));
            mk(&format!("bus/pci/drivers/{drv}"));
            mk("bus/pci/devices");
            mk(&format!("class/net/{iface}"));
            symlink(
                format!("../../../bus/pci/drivers/{drv}"),
                sysfs.join(&dev).join("driver"),
            )
            .unwrap();
            symlink(
                format!("../../../{dev}"),
                sysfs.join("bus/pci/devices").join(pci),
            )
            .unwrap();
            symlink(
                format!("../../../{dev}"),
                sysfs.join("class/net").join(iface).join("device"),
            )
            .unwrap();
        }
        // A virtio-net NIC: its interface's device is virtio3, whose parent
        // is the PCI function DPDK binds.
        let virtio = "devices/pci0000:00/0000:00:05.0";
        mk(&format!("{virtio}/virtio3/net/eth5"));
        mk("bus/pci/drivers/virtio-pci");
        mk("class/net/eth5");
        symlink(
            "../../../bus/pci/drivers/virtio-pci",
            sysfs.join(virtio).join("driver"),
        )
        .unwrap();
        symlink(
            format!("../../../{virtio}"),
            sysfs.join("bus/pci/devices/0000:00:05.0"),
        )
        .unwrap();
        symlink(
            format!("../../../{virtio}/virtio3"),
            sysfs.join("class/net/eth5/device"),
        )
        .unwrap();
        mk("class/net/veth0");
        mk("kernel/iommu_groups");
        if iommu {
            mk("kernel/iommu_groups/7/devices");
        }
        write_executable(&dir.path("dpdk-devbind.py"), STUB_DEVBIND);
        write_executable(&dir.path("modprobe"), STUB_MODPROBE);
        Fake {
            sysfs,
            state: dir.path("state"),
            devbind_log: dir.path("devbind.log"),
            modprobe_log: dir.path("modprobe.log"),
            dir,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = script_cmd("bind-nics.sh");
        c.args(args)
            .env("SYSFS", &self.sysfs)
            .env("DPDK_DEVBIND", self.dir.path("dpdk-devbind.py"))
            .env("MODPROBE", self.dir.path("modprobe"))
            .env("STATE_DIR", &self.state)
            .env("SYSCTL_DIR", self.dir.path("sysctl.d"))
            .env("DEVBIND_LOG", &self.devbind_log)
            .env("MODPROBE_LOG", &self.modprobe_log)
            // No process of that name: an appliance running on this
            // machine does not change what --unbind does here.
            .env("APPLIANCE_PROC", "lb-appliance-not-running")
            // No default route: this machine's own does not reach the fake
            // NICs (a test that wants one sets it).
            .env("IP_DEFAULT_ROUTES", "");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.cmd(args))
    }

    fn devbind_calls(&self) -> Vec<String> {
        read_lines(&self.devbind_log)
    }

    fn modprobe_calls(&self) -> Vec<String> {
        read_lines(&self.modprobe_log)
    }

    fn recorded(&self) -> String {
        std::fs::read_to_string(self.state.join("nic-drivers")).unwrap_or_default()
    }

    fn driver_of(&self, pci: &str) -> String {
        let link = std::fs::read_link(self.sysfs.join("bus/pci/devices").join(pci).join("driver"))
            .unwrap();
        link.file_name().unwrap().to_string_lossy().into_owned()
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn binds(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| c.contains("-b ")).collect()
}

/// Stub: bind eth9 (by name) to vfio-pci, record e1000e, --status passes
/// through, --unbind gives it back to e1000e and forgets it.
#[test]
fn binds_records_and_unbinds_against_a_stub() {
    let f = Fake::new("ops-bind", true);
    f.run(&["--no-hugepages", "eth9"])
        .assert_ok()
        .assert_stderr_has(&[PCI, "bound to vfio-pci", "e1000e"]);
    assert_eq!(f.modprobe_calls(), ["vfio-pci"]);
    assert_eq!(f.devbind_calls(), [format!("-b vfio-pci {PCI}")]);
    assert_eq!(f.recorded(), format!("{PCI} e1000e\n"));
    assert_eq!(f.driver_of(PCI), "vfio-pci");
    assert_eq!(
        f.driver_of("0000:00:08.0"),
        "ixgbe",
        "the other NIC is untouched"
    );

    // Binding again (by PCI address, short form) changes nothing and keeps
    // the record.
    f.run(&["--no-hugepages", "00:09.0"])
        .assert_ok()
        .assert_stderr_has(&["already bound to vfio-pci"]);
    assert_eq!(binds(&f.devbind_calls()).len(), 1);
    assert_eq!(f.recorded(), format!("{PCI} e1000e\n"));

    // --status passes dpdk-devbind.py's listing through, with the record.
    let r = f.run(&["--status"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("0000:00:09.0 'Fake 82574L") && r.stdout.contains("drv=vfio-pci"),
        "{}",
        r.show()
    );
    assert!(r.stdout.contains(&format!("{PCI} e1000e")), "{}", r.show());
    assert_eq!(f.devbind_calls().last().unwrap(), "--status");

    // --unbind with no NIC named gives back every recorded one.
    f.run(&["--unbind"])
        .assert_ok()
        .assert_stderr_has(&["back on e1000e"]);
    assert_eq!(
        f.devbind_calls().last().unwrap(),
        &format!("-b e1000e {PCI}")
    );
    assert_eq!(f.driver_of(PCI), "e1000e");
    assert_eq!(f.recorded(), "", "the record is dropped once restored");

    // Nothing recorded any more: --unbind alone says what to do.
    f.run(&["--unbind"])
        .assert_code(1)
        .assert_stderr_has(&["none recorded", "--status"]);
}

/// Stub: without a record, --unbind takes the kernel driver from
/// dpdk-devbind.py --status (`unused=`), skipping the DPDK drivers.
#[test]
fn unbind_falls_back_to_the_devbind_listing() {
    let f = Fake::new("ops-unbind", true);
    f.run(&["--no-hugepages", PCI]).assert_ok();
    std::fs::remove_file(f.state.join("nic-drivers")).unwrap();
    f.run(&["--unbind", PCI]).assert_ok();
    let calls = f.devbind_calls();
    assert_eq!(
        calls[calls.len() - 2..],
        ["--status".to_string(), format!("-b e1000e {PCI}")]
    );
    assert_eq!(f.driver_of(PCI), "e1000e");
}

/// Stub: with no IOMMU groups, vfio-pci is refused with how to turn the
/// IOMMU on (or no-IOMMU mode, knowingly); nothing is bound or recorded.
/// No-IOMMU mode turned on, or uio_pci_generic, go ahead.
#[test]
fn no_iommu_is_refused_with_the_way_out() {
    let f = Fake::new("ops-iommu", false);
    f.run(&["--no-hugepages", PCI])
        .assert_code(1)
        .assert_stderr_has(&[
            "bind-nics: ",
            "IOMMU is off",
            "intel_iommu=on",
            "amd_iommu=on",
            "GRUB_CMDLINE_LINUX",
            "enable_unsafe_noiommu_mode",
        ]);
    assert!(binds(&f.devbind_calls()).is_empty());
    assert_eq!(f.recorded(), "");
    assert_eq!(f.driver_of(PCI), "e1000e");

    let param = f.sysfs.join("module/vfio/parameters");
    std::fs::create_dir_all(&param).unwrap();
    std::fs::write(param.join("enable_unsafe_noiommu_mode"), "Y\n").unwrap();
    f.run(&["--no-hugepages", PCI])
        .assert_ok()
        .assert_stderr_has(&["warning: no IOMMU", "no-IOMMU mode"]);
    assert_eq!(binds(&f.devbind_calls()), [&format!("-b vfio-pci {PCI}")]);

    let g = Fake::new("ops-uio", false);
    g.run(&["--no-hugepages", "--driver", "uio_pci_generic", "eth9"])
        .assert_ok();
    assert_eq!(g.modprobe_calls(), ["uio_pci_generic"]);
    assert_eq!(
        binds(&g.devbind_calls()),
        [&format!("-b uio_pci_generic {PCI}")]
    );
    assert_eq!(g.recorded(), format!("{PCI} e1000e\n"));
}

/// Stub: the NIC that carries the SSH session's route (IP_ROUTE_GET stands
/// for `ip route get <client>`) is refused before anything changes, and
/// bound with --force; a NIC the route does not use is bound.
#[test]
fn the_ssh_nic_is_refused_unless_forced() {
    let f = Fake::new("ops-ssh", true);
    let ssh = "203.0.113.7 50022 192.0.2.2 22";
    let route = "203.0.113.7 via 192.0.2.1 dev eth9 src 192.0.2.2 uid 0";
    for nic in ["eth9", PCI] {
        let mut c = f.cmd(&["--no-hugepages", nic]);
        c.env("SSH_CONNECTION", ssh).env("IP_ROUTE_GET", route);
        run(c).assert_code(1).assert_stderr_has(&[
            "bind-nics: refusing 0000:00:09.0",
            "SSH session",
            "eth9",
            "203.0.113.7",
            "--force",
        ]);
    }
    assert!(f.devbind_calls().is_empty(), "nothing bound");
    assert!(f.modprobe_calls().is_empty(), "refused before any change");
    assert_eq!(f.recorded(), "");

    // The other NIC is fine while the session runs over eth9.
    let mut c = f.cmd(&["--no-hugepages", "eth8"]);
    c.env("SSH_CONNECTION", ssh).env("IP_ROUTE_GET", route);
    run(c).assert_ok();
    assert_eq!(f.driver_of("0000:00:08.0"), "vfio-pci");

    let mut c = f.cmd(&["--no-hugepages", "--force", "eth9"]);
    c.env("SSH_CONNECTION", ssh).env("IP_ROUTE_GET", "dev eth9");
    run(c)
        .assert_ok()
        .assert_stderr_has(&["warning: 0000:00:09.0 carries this SSH session's route"]);
    let calls = f.devbind_calls();
    assert!(
        calls
            .last()
            .unwrap()
            .ends_with(&format!("-b vfio-pci {PCI}")),
        "{calls:?}"
    );
    assert_eq!(f.driver_of(PCI), "vfio-pci");
    assert_eq!(f.recorded(), format!("0000:00:08.0 ixgbe\n{PCI} e1000e\n"));
}

/// Found in audit: without an SSH session (on the console, or the boot
/// unit) nothing kept the box's management NIC from being bound, and
/// dpdk-devbind.py's own check sees IPv4 routes on the very interface
/// only. A NIC under a default route, IPv4 or IPv6, through a bond too, is
/// refused, SSH or not, unless --force; one the defaults do not use is
/// bound. An SSH session whose interface cannot be told refuses every NIC.
#[test]
fn the_default_route_nic_is_refused_without_ssh_too() {
    let f = Fake::new("ops-default", true);
    let net = f.sysfs.join("class/net");
    std::fs::create_dir_all(net.join("bond0")).unwrap();
    symlink("../eth8", net.join("bond0/lower_eth8")).unwrap();
    let v6 = "default via fe80::1 dev eth9 proto ra metric 1024 expires 1799sec pref medium";
    let bonded = "default via 192.0.2.1 dev bond0 proto static";
    for (defaults, nic, pci, via) in [
        (v6, "eth9", PCI, "eth9"),
        (bonded, "eth8", "0000:00:08.0", "bond0"),
    ] {
        let mut c = f.cmd(&["--no-hugepages", nic]);
        c.env("IP_DEFAULT_ROUTES", defaults);
        run(c).assert_code(1).assert_stderr_has(&[
            &format!("refusing {pci}"),
            "default route",
            via,
            "--force",
        ]);
    }
    assert!(f.devbind_calls().is_empty(), "nothing bound");
    // The NIC the default does not use is bound.
    let mut c = f.cmd(&["--no-hugepages", "eth8"]);
    c.env("IP_DEFAULT_ROUTES", v6);
    run(c).assert_ok();
    assert_eq!(f.driver_of("0000:00:08.0"), "vfio-pci");
    // --force: bound, with a warning.
    let mut c = f.cmd(&["--no-hugepages", "--force", "eth9"]);
    c.env("IP_DEFAULT_ROUTES", v6);
    run(c)
        .assert_ok()
        .assert_stderr_has(&["warning: 0000:00:09.0: it carries a default route"]);
    assert_eq!(f.driver_of(PCI), "vfio-pci");
    // dpdk-devbind.py's own check is lifted for the NIC --force let
    // through, not for the others named with it (found in audit).
    assert!(
        f.devbind_calls()
            .last()
            .unwrap()
            .ends_with(&format!("--force -b vfio-pci {PCI}")),
        "{:?}",
        f.devbind_calls()
    );
    let g = Fake::new("ops-default-force", true);
    let mut c = g.cmd(&["--no-hugepages", "--force", "eth9", "eth8"]);
    c.env("IP_DEFAULT_ROUTES", v6);
    run(c).assert_ok();
    let calls = g.devbind_calls();
    let binds: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains(" -b ") || c.starts_with("-b "))
        .collect();
    assert!(
        binds
            .iter()
            .any(|c| c.ends_with(&format!("--force -b vfio-pci {PCI}"))),
        "{calls:?}"
    );
    assert!(
        binds
            .iter()
            .any(|c| c.ends_with("-b vfio-pci 0000:00:08.0") && !c.contains("--force")),
        "{calls:?}"
    );
    // An SSH session whose route names no interface: nothing is bound.
    let f = Fake::new("ops-ssh-unknown", true);
    let mut c = f.cmd(&["--no-hugepages", "eth8"]);
    c.env("SSH_CONNECTION", "203.0.113.7 50022 192.0.2.2 22")
        .env("IP_ROUTE_GET", "unreachable 203.0.113.7");
    run(c)
        .assert_code(1)
        .assert_stderr_has(&["refusing 0000:00:08.0", "cannot be told"]);
    assert!(f.devbind_calls().is_empty(), "nothing bound");
}

/// Found in audit: the SSH route's NIC under a bridge was read as
/// "brport", and under a VLAN on a bond the walk stopped at the bond, so
/// the NIC carrying the session was bound. Every level is followed now.
#[test]
fn the_ssh_nic_under_a_bridge_or_a_vlan_on_a_bond_is_refused() {
    let f = Fake::new("ops-stack", true);
    let net = f.sysfs.join("class/net");
    for d in ["br0/brif", "bond0.100", "bond0"] {
        std::fs::create_dir_all(net.join(d)).unwrap();
    }
    // As the kernel has them: a bridge port's entry points at the port's
    // brport folder; a VLAN's and a bond's lower_ entries at the device.
    symlink("../../eth9/brport", net.join("br0/brif/eth9")).unwrap();
    symlink("../bond0", net.join("bond0.100/lower_bond0")).unwrap();
    symlink("../eth8", net.join("bond0/lower_eth8")).unwrap();
    let ssh = "203.0.113.7 50022 192.0.2.2 22";
    for (via, nic, pci) in [("br0", "eth9", PCI), ("bond0.100", "eth8", "0000:00:08.0")] {
        let mut c = f.cmd(&["--no-hugepages", nic]);
        c.env("SSH_CONNECTION", ssh).env(
            "IP_ROUTE_GET",
            format!("203.0.113.7 dev {via} src 192.0.2.2"),
        );
        run(c)
            .assert_code(1)
            .assert_stderr_has(&[&format!("refusing {pci}"), via]);
    }
    assert!(f.devbind_calls().is_empty(), "nothing bound");
}

/// Found in audit: sudo and su - drop SSH_CONNECTION, and the check was
/// then skipped without a word. The callers' environments are read too
/// (PROC stands for /proc: this test process is the script's parent).
#[test]
fn the_ssh_session_is_found_in_a_callers_environment() {
    let f = Fake::new("ops-sudo", true);
    let proc_dir = f.dir.path("proc");
    let me = proc_dir.join(std::process::id().to_string());
    std::fs::create_dir_all(&me).unwrap();
    std::fs::write(
        me.join("environ"),
        b"HOME=/root\0SSH_CONNECTION=203.0.113.7 50022 192.0.2.2 22\0TERM=xterm\0",
    )
    .unwrap();
    std::fs::write(me.join("status"), "Name:\tsudo\nPPid:\t1\n").unwrap();
    let mut c = f.cmd(&["--no-hugepages", "eth9"]);
    c.env("PROC", &proc_dir)
        .env("IP_ROUTE_GET", "203.0.113.7 dev eth9 src 192.0.2.2");
    run(c)
        .assert_code(1)
        .assert_stderr_has(&[&format!("refusing {PCI}"), "203.0.113.7"]);
    assert!(f.devbind_calls().is_empty(), "nothing bound");
}

/// Found in audit: --unbind while the appliance held the NIC hung in the
/// kernel. It is refused (APPLIANCE_PROC names the process looked for;
/// a sleep of this test stands in for it), or warned of with --force.
#[test]
fn unbind_refuses_while_the_appliance_runs() {
    let f = Fake::new("ops-busy", true);
    f.run(&["--no-hugepages", "eth9"]).assert_ok();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let mut c = f.cmd(&["--unbind"]);
    c.env("APPLIANCE_PROC", "sleep");
    let r = run(c);
    let mut c = f.cmd(&["--unbind", "--force"]);
    c.env("APPLIANCE_PROC", "sleep");
    let forced = run(c);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    r.assert_code(1).assert_stderr_has(&[
        "sleep is running",
        "systemctl stop lb-appliance",
        "--force",
    ]);
    forced
        .assert_ok()
        .assert_stderr_has(&["warning: sleep is running"]);
    assert_eq!(f.driver_of(PCI), "e1000e", "given back with --force");
}

/// Stub: --dry-run prints the binding commands and runs none of them.
#[test]
fn dry_run_binds_nothing() {
    let f = Fake::new("ops-dry", true);
    let r = f.run(&["--no-hugepages", "--dry-run", "eth9"]);
    r.assert_ok();
    let devbind = f.dir.path("dpdk-devbind.py");
    for line in [
        format!("+ {} vfio-pci", f.dir.path("modprobe").display()),
        format!("+ {} -b vfio-pci {PCI}", devbind.display()),
        format!("{PCI} e1000e"),
    ] {
        assert!(r.stdout.contains(&line), "{line:?} missing:\n{}", r.show());
    }
    assert!(f.devbind_calls().is_empty() && f.modprobe_calls().is_empty());
    assert_eq!(f.recorded(), "");
    assert_eq!(f.driver_of(PCI), "e1000e");
}

/// Stub: a NIC that is not there, or not on PCI, is a failure that says
/// what to run.
#[test]
fn unknown_or_virtual_nics_are_refused() {
    let f = Fake::new("ops-unknown", true);
    for (nic, says) in [
        ("eth7", "neither a PCI address"),
        ("0000:00:0a.0", "no PCI device 0000:00:0a.0"),
        ("veth0", "veth0 is not a PCI NIC"),
    ] {
        f.run(&["--no-hugepages", nic])
            .assert_code(1)
            .assert_stderr_has(&["bind-nics: ", says, "--status"]);
    }
    assert!(f.devbind_calls().is_empty());

    // A missing driver module is named with what to check.
    let g = Fake::new("ops-nomod", true);
    write_executable(
        &g.dir.path("modprobe"),
        "#!/bin/sh\necho \"modprobe: FATAL: Module $1 not found\" >&2\nexit 1\n",
    );
    g.run(&["--no-hugepages", PCI])
        .assert_code(1)
        .assert_stderr_has(&[
            "cannot load vfio-pci",
            "Module vfio-pci not found",
            "/boot/config-",
        ]);
    assert!(g.devbind_calls().is_empty());
}

// ------------------------------------------------------------------ systemd unit and install

const UNIT: &str = "packaging/systemd/lb-appliance.service";
const BIND_UNIT: &str = "packaging/systemd/lb-appliance-bind-nics.service";

fn install_into(destdir: &Path, args: &[&str]) -> Run {
    let mut c = script_cmd("install-service.sh");
    c.args(args)
        .env("DESTDIR", destdir)
        .env("LB_BINARY", common::BIN);
    run(c)
}

/// Runs for real: install-service.sh into a DESTDIR puts every file where
/// it belongs and never overwrites an existing lb.toml; --prefix moves the
/// binary and the unit's paths.
#[test]
fn install_service_stages_every_file() {
    let tmp = TempDir::new("ops-install");
    let dest = tmp.path("root");
    install_into(&dest, &[])
        .assert_ok()
        .assert_stderr_has(&["systemctl daemon-reload && systemctl enable lb-appliance"]);

    let bin = dest.join("usr/local/bin/lb-appliance");
    let meta = std::fs::metadata(&bin).expect("the binary");
    assert!(meta.permissions().mode() & 0o111 != 0, "executable");
    assert_eq!(meta.len(), std::fs::metadata(common::BIN).unwrap().len());
    let root = Path::new(ROOT);
    let example = std::fs::read_to_string(root.join("examples/lb.toml")).unwrap();
    let conf = dest.join("etc/lb-appliance/lb.toml");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), example);
    for e in std::fs::read_dir(root.join("examples")).unwrap() {
        let e = e.unwrap().path();
        if e.extension().is_some_and(|x| x == "toml") {
            let staged = dest
                .join("usr/local/share/lb-appliance/examples")
                .join(e.file_name().unwrap());
            assert_eq!(
                std::fs::read(&staged).unwrap_or_default(),
                std::fs::read(&e).unwrap(),
                "{}",
                staged.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/systemd/system/lb-appliance.service")).unwrap(),
        std::fs::read_to_string(root.join(UNIT)).unwrap()
    );
    // The boot-time binding: its unit and the script it runs.
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/systemd/system/lb-appliance-bind-nics.service"))
            .unwrap(),
        std::fs::read_to_string(root.join(BIND_UNIT)).unwrap()
    );
    let script = dest.join("usr/local/sbin/lb-appliance-bind-nics");
    assert_eq!(
        std::fs::read(&script).unwrap(),
        std::fs::read(root.join("scripts/bind-nics.sh")).unwrap()
    );
    assert!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o111 != 0);

    // The operator's lb.toml survives a second install, and so does the
    // mode the operator gave its folder (found in audit: 0750 became 0755).
    let mine = format!("# the operator's own configuration\n{example}");
    std::fs::write(&conf, &mine).unwrap();
    let etc = dest.join("etc/lb-appliance");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o750)).unwrap();
    install_into(&dest, &["--no-enable"])
        .assert_ok()
        .assert_stderr_has(&["kept the existing"]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), mine);
    assert_eq!(
        std::fs::metadata(&etc).unwrap().permissions().mode() & 0o777,
        0o750
    );

    // An upgrade whose binary refuses the existing lb.toml installs
    // nothing (found in audit: it was installed, and the next restart
    // failed), unless --force.
    let bad = "# not a configuration this version takes\n";
    std::fs::write(&conf, bad).unwrap();
    std::fs::remove_file(&bin).unwrap();
    install_into(&dest, &["--no-enable"])
        .assert_code(1)
        .assert_stderr_has(&["refuses the existing", "nothing installed", "--force"]);
    assert!(!bin.exists(), "nothing installed");
    install_into(&dest, &["--no-enable", "--force"])
        .assert_ok()
        .assert_stderr_has(&["installing anyway"]);
    assert!(bin.is_file());
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        bad,
        "never overwritten"
    );

    // A prefix the units' lines cannot carry is refused before anything.
    install_into(&tmp.path("root3"), &["--prefix", "/opt/my lb"])
        .assert_code(2)
        .assert_stderr_has(&["--prefix may hold"]);
    assert!(!tmp.path("root3").exists());

    // --prefix: the binary and the unit's commands follow it.
    let dest2 = tmp.path("root2");
    install_into(&dest2, &["--prefix", "/opt/lb"]).assert_ok();
    assert!(dest2.join("opt/lb/bin/lb-appliance").is_file());
    assert!(dest2
        .join("opt/lb/share/lb-appliance/examples/lb.toml")
        .is_file());
    let unit =
        std::fs::read_to_string(dest2.join("etc/systemd/system/lb-appliance.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/lb/bin/lb-appliance -c /etc/lb-appliance/lb.toml\n"));
    assert!(!unit.contains("/usr/local/"), "{unit}");
    let bind =
        std::fs::read_to_string(dest2.join("etc/systemd/system/lb-appliance-bind-nics.service"))
            .unwrap();
    assert!(bind.contains("ExecStart=/opt/lb/sbin/lb-appliance-bind-nics --no-hugepages --nics-file /etc/lb-appliance/nics\n"), "{bind}");
    assert!(dest2.join("opt/lb/sbin/lb-appliance-bind-nics").is_file());
}

/// Stub: --nics-file binds what the file names (as the boot-time unit
/// runs it), comments and blank lines aside; an unreadable file is a bad
/// argument.
#[test]
fn nics_file_binds_what_it_names() {
    let f = Fake::new("ops-nicsfile", true);
    let list = f.dir.path("nics");
    std::fs::write(
        &list,
        "# the data-plane NICs\n\neth9   # uplink\n0000:00:08.0",
    )
    .unwrap();
    f.run(&["--no-hugepages", "--nics-file", list.to_str().unwrap()])
        .assert_ok();
    assert_eq!(
        binds(&f.devbind_calls()),
        [&format!("-b vfio-pci {PCI}"), "-b vfio-pci 0000:00:08.0"]
    );
    f.run(&["--no-hugepages", "--nics-file", "/nonexistent/nics"])
        .assert_code(2)
        .assert_stderr_has(&["--nics-file /nonexistent/nics cannot be read"]);
    // A file that names none (found in audit: exit 2, so the boot unit
    // failed and the appliance, which requires it, did not start).
    let none = f.dir.path("nics-none");
    std::fs::write(
        &none,
        "# one PCI address or interface per line
# eth9
",
    )
    .unwrap();
    let before = f.devbind_calls().len();
    f.run(&["--no-hugepages", "--nics-file", none.to_str().unwrap()])
        .assert_ok()
        .assert_stderr_has(&["names no NIC: nothing to bind"]);
    assert_eq!(f.devbind_calls().len(), before, "nothing bound");
}

fn systemd_analyze_available() -> bool {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") => {
            panic!("systemd-analyze is needed (Debian package systemd)")
        }
        _ => {
            eprintln!("SKIPPED the systemd unit check: no systemd-analyze");
            false
        }
    }
}

/// Runs for real: `systemd-analyze verify` of the unit. As shipped, its
/// only complaint may be that /usr/local/bin/lb-appliance is not installed
/// on this machine; staged with install-service.sh and pointed at the
/// staged binary, it must verify without a word. The ExecStartPre check
/// accepts the installed lb.toml and fails an invalid one with status 2,
/// which the unit's RestartPreventExitStatus names.
#[test]
fn the_systemd_unit_verifies() {
    let root = Path::new(ROOT);
    let text = std::fs::read_to_string(root.join(UNIT)).unwrap();
    for line in [
        "ExecStartPre=/usr/local/bin/lb-appliance -c /etc/lb-appliance/lb.toml --check\n",
        "ExecStart=/usr/local/bin/lb-appliance -c /etc/lb-appliance/lb.toml\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        // READY=1, the watchdog and the reload protocol (tests/systemd.rs).
        "Type=notify\n",
        "NotifyAccess=main\n",
        "WatchdogSec=10s\n",
        "Restart=on-failure\n",
        "RestartSec=2s\n",
        "RestartPreventExitStatus=2\n",
        "LimitMEMLOCK=infinity\n",
        "NoNewPrivileges=yes\n",
        "ProtectSystem=full\n",
        "ProtectHome=yes\n",
        "PrivateTmp=yes\n",
        "After=network-online.target\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(text.contains(line), "{UNIT} lacks {line:?}");
    }
    let settings: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    for absent in [
        "ProtectKernelTunables",
        "PrivateDevices",
        "RuntimeDirectory",
    ] {
        assert!(
            !settings.iter().any(|l| l.starts_with(absent)),
            "{absent} would break DPDK"
        );
    }
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_IPC_LOCK",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SYS_RAWIO",
        // A script check's `user`: switched to, and its program killed.
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
    ] {
        assert!(
            settings
                .iter()
                .any(|l| l.starts_with("CapabilityBoundingSet=") && l.contains(cap)),
            "{cap} missing"
        );
    }

    let tmp = TempDir::new("ops-unit");
    let dest = tmp.path("root");
    install_into(&dest, &[]).assert_ok();
    let conf = dest.join("etc/lb-appliance/lb.toml");
    let check = Command::new(dest.join("usr/local/bin/lb-appliance"))
        .args(["-c", conf.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let bad = tmp.path("bad.toml");
    std::fs::write(&bad, "[workers]\nlcores = \"one\"\n").unwrap();
    let check = Command::new(common::BIN)
        .args(["-c", bad.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");

    if !systemd_analyze_available() {
        return;
    }
    // As shipped.
    let out = Command::new("systemd-analyze")
        .args(["verify", root.join(UNIT).to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let installed = Path::new("/usr/local/bin/lb-appliance").exists();
    for line in err.lines() {
        assert!(
            !installed
                && line.ends_with(
                    "Command /usr/local/bin/lb-appliance is not executable: No such file or directory"
                ),
            "systemd-analyze verify {UNIT}: {line}\n{err}"
        );
    }

    // Staged, pointing at the staged binary and script: not a word, from
    // either unit.
    for (name, bin) in [
        ("lb-appliance.service", "bin"),
        ("lb-appliance-bind-nics.service", "sbin"),
    ] {
        let staged = std::fs::read_to_string(dest.join("etc/systemd/system").join(name))
            .unwrap()
            .replace(
                &format!("/usr/local/{bin}/"),
                &format!("{}/", dest.join("usr/local").join(bin).display()),
            );
        let unit_dir = tmp.path(&format!("verify-{bin}"));
        std::fs::create_dir_all(&unit_dir).unwrap();
        let unit = unit_dir.join(name);
        std::fs::write(&unit, staged).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", unit.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify of the staged {name}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Stub: a virtio-net interface resolves to the virtio-pci function above
/// its virtio device, which is what gets bound and recorded.
#[test]
fn a_virtio_interface_binds_its_pci_function() {
    let f = Fake::new("ops-virtio", true);
    f.run(&["--no-hugepages", "eth5"]).assert_ok();
    assert_eq!(binds(&f.devbind_calls()), ["-b vfio-pci 0000:00:05.0"]);
    assert_eq!(f.recorded(), "0000:00:05.0 virtio-pci\n");
    f.run(&["--unbind", "0000:00:05.0"]).assert_ok();
    assert_eq!(
        f.devbind_calls().last().unwrap(),
        "-b virtio-pci 0000:00:05.0"
    );
}

/// Runs for real (read-only: --dry-run, --no-hugepages, no override of
/// `ip route get` or /sys): with SSH_CONNECTION naming a client reached
/// through this machine's default route, the PCI NIC of that route is
/// refused. Skipped where that route has no PCI NIC under it.
#[test]
fn the_real_ssh_route_nic_is_refused() {
    let client = "198.51.100.7";
    let route = Command::new("ip").args(["route", "get", client]).output();
    let route = match route {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            eprintln!("SKIPPED the_real_ssh_route_nic_is_refused: no route to {client}");
            return;
        }
    };
    let words: Vec<&str> = route.split_whitespace().collect();
    let Some(dev) = words
        .windows(2)
        .find(|w| w[0] == "dev")
        .map(|w| w[1].to_string())
    else {
        eprintln!("SKIPPED the_real_ssh_route_nic_is_refused: no dev in {route:?}");
        return;
    };
    let is_pci = |s: &str| {
        let b = s.as_bytes();
        s.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
    };
    let device = std::fs::canonicalize(format!("/sys/class/net/{dev}/device")).ok();
    let pci = device.and_then(|d| {
        [Some(d.as_path()), d.parent()]
            .into_iter()
            .flatten()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .find(|n| is_pci(n))
    });
    let Some(pci) = pci else {
        eprintln!("SKIPPED the_real_ssh_route_nic_is_refused: {dev} is not a PCI NIC");
        return;
    };
    for nic in [pci.as_str(), dev.as_str()] {
        let mut c = script_cmd("bind-nics.sh");
        c.args(["--dry-run", "--no-hugepages", nic])
            .env("SSH_CONNECTION", format!("{client} 50022 192.0.2.2 22"))
            .env("DPDK_DEVBIND", "/bin/false");
        let r = run(c);
        r.assert_code(1)
            .assert_stderr_has(&[&format!("refusing {pci}"), &dev, client, "--force"]);
        assert!(r.stdout.is_empty(), "nothing printed to run:\n{}", r.show());
    }
}

/// systemd's `DefaultTasksMax=` on this host: 15 % of the smallest of
/// `kernel.pid_max`, `kernel.threads-max` (and the root cgroup's
/// `pids.max`, unlimited here), what a unit without `TasksMax=` gets.
fn systemd_default_tasks_max() -> u64 {
    let read = |p: &str| -> u64 {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    read("/proc/sys/kernel/pid_max").min(read("/proc/sys/kernel/threads-max")) * 15 / 100
}

/// Found in audit: every checked real has a checker thread of its own
/// (README "Health checks"), and a config may have up to `MAX_REALS`
/// (65,536) checked reals, but the unit set no `TasksMax=`, so systemd's
/// default applies: 15 % of the smaller of `pid_max` and `threads-max`
/// (4,915 on a host with pid_max 32,768; about 19,600 on a 16 GB host
/// whose pid_max systemd raised). Past it, each further checker fails to
/// start (EAGAIN), which counts as a failed check: a real assumed up goes
/// down at its first, and stays down, as the retry fails the same way,
/// while `--check` said the file was good. (A process also gets about
/// `vm.max_map_count / 2`, ~32,700, thread stacks by default: README
/// says to raise it past about 30,000 checked reals.) The unit sets
/// `TasksMax=infinity` now.
#[test]
fn the_unit_lets_every_checked_real_have_its_checker_thread() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/lb-appliance.service"),
    )
    .unwrap();
    let tasks_max = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TasksMax="))
        .next_back()
        .map(str::to_string);
    // Checkers, workers, the metrics and control sockets' threads, the
    // EAL's: a margin above the reals.
    let needed = lb_config::MAX_REALS as u64 + 256;
    let allowed = match tasks_max.as_deref() {
        Some("infinity") => u64::MAX,
        Some(n) => n.parse().expect("TasksMax= as a number"),
        None => systemd_default_tasks_max(),
    };
    assert!(
        allowed >= needed,
        "the unit allows {allowed} tasks (TasksMax={tasks_max:?}; systemd's default here is {}), \
         a config of {} checked reals needs {needed} threads",
        systemd_default_tasks_max(),
        lb_config::MAX_REALS
    );
}
