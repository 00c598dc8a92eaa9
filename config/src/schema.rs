//! The raw serde schema of `lb.toml`. Every key is optional here and every
//! value that needs checking (addresses, durations, enum words, integers) is
//! read loosely, so that validation can report all problems at once.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub dpdk: Option<RawDpdk>,
    pub workers: Option<RawWorkers>,
    pub ports: Option<Vec<RawPort>>,
    pub neighbors: Option<Vec<RawNeighbor>>,
    pub flows: Option<RawFlows>,
    pub metrics: Option<RawMetrics>,
    pub services: Option<Vec<RawService>>,
    pub announce: Option<RawAnnounce>,
    pub sync: Option<RawSync>,
    pub control: Option<RawControl>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDpdk {
    pub eal_args: Option<Vec<String>>,
    pub mbufs: Option<i64>,
    pub burst: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWorkers {
    pub lcores: Option<Vec<i64>>,
    pub poll: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPort {
    pub name: Option<String>,
    pub device: Option<String>,
    pub address: Option<String>,
    pub address6: Option<String>,
    pub gateway: Option<String>,
    pub gateway6: Option<String>,
    pub mtu: Option<i64>,
    pub mac: Option<String>,
    pub kernel_interface: Option<String>,
    pub routing_peers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawNeighbor {
    pub address: Option<String>,
    pub mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFlows {
    pub capacity: Option<i64>,
    pub tcp_timeout: Option<String>,
    pub tcp_fin_timeout: Option<String>,
    pub tcp_syn_timeout: Option<String>,
    pub udp_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawControl {
    pub socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAnnounce {
    pub table: Option<i64>,
    pub withdraw_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSync {
    pub role: Option<String>,
    pub peer: Option<String>,
    pub listen: Option<String>,
    pub interval: Option<String>,
    pub dead_after: Option<String>,
    pub gateway: Option<String>,
    pub gateway6: Option<String>,
    pub key_file: Option<String>,
    pub accept_key_file: Option<String>,
    pub max_clock_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawService {
    pub name: Option<String>,
    pub vip: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub scheduler: Option<String>,
    pub forwarding: Option<String>,
    pub persistence: Option<String>,
    pub syn_proxy: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub reals: Option<Vec<RawReal>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHealthCheck {
    pub kind: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub path: Option<String>,
    pub expect_status: Option<i64>,
    pub host: Option<String>,
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub initial: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawReal {
    pub address: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<i64>,
    pub forwarding: Option<String>,
}

/// The keys each table accepts, by table path with indices removed
/// (`""` is the top level, `"services.reals"` a real). Used for
/// "did you mean" hints on unknown keys; keep in step with the structs above.
pub(crate) fn known_keys(table: &str) -> &'static [&'static str] {
    match table {
        "" => &[
            "dpdk",
            "workers",
            "ports",
            "neighbors",
            "flows",
            "metrics",
            "services",
            "announce",
            "sync",
            "control",
        ],
        "dpdk" => &["eal_args", "mbufs", "burst"],
        "workers" => &["lcores", "poll"],
        "ports" => &[
            "name",
            "device",
            "address",
            "address6",
            "gateway",
            "gateway6",
            "mtu",
            "mac",
            "kernel_interface",
            "routing_peers",
        ],
        "neighbors" => &["address", "mac"],
        "flows" => &[
            "capacity",
            "tcp_timeout",
            "tcp_fin_timeout",
            "tcp_syn_timeout",
            "udp_timeout",
        ],
        "metrics" => &["listen"],
        "control" => &["socket"],
        "announce" => &["table", "withdraw_delay"],
        "sync" => &[
            "role",
            "peer",
            "listen",
            "interval",
            "dead_after",
            "gateway",
            "gateway6",
            "key_file",
            "accept_key_file",
            "max_clock_skew",
        ],
        "services" => &[
            "name",
            "vip",
            "port",
            "protocol",
            "scheduler",
            "forwarding",
            "persistence",
            "syn_proxy",
            "health_check",
            "reals",
        ],
        "services.health_check" => &[
            "kind",
            "interval",
            "timeout",
            "rise",
            "fall",
            "path",
            "expect_status",
            "host",
            "command",
            "user",
            "initial",
        ],
        "services.reals" => &["address", "port", "weight", "forwarding"],
        _ => &[],
    }
}

/// A key path as `services[0].reals[1].foo`, from serde_ignored's path.
pub(crate) fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        Path::Map { parent, key } => {
            let parent = path_string(parent);
            let key = path_key(key);
            if parent.is_empty() {
                key
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

/// A key as a path shows it: bare as TOML writes it when it can be
/// (`services`, `health_check`), else quoted with escapes (`""`,
/// `"a.b"`, `"a\nb"`), so that a path always names its place, on one line
/// (found by fuzzing: `[""]` was reported at an empty path).
fn path_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// 1-based line and column of a byte offset in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = match text.get(line_start..offset) {
        Some(s) => s.chars().count() + 1,
        None => offset - line_start + 1,
    };
    (line, column)
}

/// Removes `[N]` indices: `services[0].reals[1]` -> `services.reals`.
fn table_shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The message for an unknown key at `path`, with a hint when a known key is close.
pub(crate) fn unknown_key_message(path: &str) -> String {
    let (parent, key) = match path.rfind('.') {
        Some(dot) => (&path[..dot], &path[dot + 1..]),
        None => ("", path),
    };
    let hint = known_keys(&table_shape(parent))
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min();
    match hint {
        Some((_, k)) => format!("unknown key (did you mean \"{k}\"?)"),
        None => "unknown key".to_string(),
    }
}

/// A TOML syntax or type error of `text` (read from `source`) as a config
/// error: at the key it is at when there is one (a syntax error has none:
/// then at `source`), the house rule being that a bad config names the
/// offending key, with the line and column, in one line, without the
/// schema's type names.
pub(crate) fn toml_error(
    text: &str,
    source: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> crate::ConfigError {
    let mut key = e.path().to_string();
    let e = e.into_inner();
    // One error per line in reports: fold toml's multi-line messages.
    let message = e
        .message()
        .trim()
        .lines()
        .collect::<Vec<_>>()
        .join("; ")
        .replace("expected i64", "expected an integer");
    // Not the schema's type names: `expected struct RawFlows`.
    let message = match message.find("expected struct ") {
        Some(at) => format!("{}expected a table", &message[..at]),
        None => message,
    };
    // A table where an element of an array of tables was being read as
    // something else: the key was written `[[key]]` where it takes a
    // table (serde reads a struct from a sequence too, and then said
    // `flows[0]: invalid type: map, expected an integer`, about the
    // table's first field) or a plain array.
    let message = match key.rfind('[') {
        Some(at) if message.starts_with("invalid type: map") && key.ends_with(']') => {
            key.truncate(at);
            // Not "write `[key]`": the key may take a plain array
            // (`lcores = [1]`), which the error cannot tell from a table
            // (found in review).
            format!("an array of tables (`[[{key}]]`) where `{key}` takes none")
        }
        _ => message,
    };
    let message = match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    };
    match key.as_str() {
        "" | "." => crate::ConfigError::new(source, message),
        _ => crate::ConfigError::new(key, format!("{message} (in {source})")),
    }
}

/// Deserializes `text` into the raw schema. Unknown keys come back as errors
/// alongside the raw config; a syntax or type error is returned alone, with
/// `source` as its path and its line and column.
pub(crate) fn read(
    text: &str,
    source: &str,
) -> Result<(RawConfig, Vec<crate::ConfigError>), crate::ConfigError> {
    // At most `MAX_ERRORS` unknown keys are named; the rest are counted.
    let mut unknown = Vec::new();
    let mut more = 0usize;
    let mut note = |path: serde_ignored::Path<'_>| {
        if unknown.len() < crate::validate::MAX_ERRORS {
            unknown.push(path_string(&path));
        } else {
            more += 1;
        }
    };
    let ignored = serde_ignored::Deserializer::new(toml::Deserializer::new(text), &mut note);
    let raw: RawConfig =
        serde_path_to_error::deserialize(ignored).map_err(|e| toml_error(text, source, e))?;
    let errors = unknown
        .into_iter()
        .map(|path| {
            let message = unknown_key_message(&path);
            crate::ConfigError::new(path, message)
        })
        .collect::<Vec<_>>();
    let mut errors = errors;
    if more > 0 {
        errors.push(crate::ConfigError::new(
            "(config)",
            format!("{more} more unknown keys not shown"),
        ));
    }
    Ok((raw, errors))
}
