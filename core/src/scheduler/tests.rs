//! Schedulers against small reference models.

use lb_config::SchedulerKind;
use proptest::prelude::*;

use super::maglev::permutation;
use super::*;

const ALL_KINDS: [SchedulerKind; 6] = [
    SchedulerKind::RoundRobin,
    SchedulerKind::WeightedRoundRobin,
    SchedulerKind::LeastConnection,
    SchedulerKind::WeightedLeastConnection,
    SchedulerKind::SourceHash,
    SchedulerKind::Maglev,
];

/// Deterministic test randomness (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Backends with the given weights and keys as a caller would make them
/// (a hash of address and port).
fn backends(weights: &[u32]) -> Vec<Backend> {
    let mut rng = Rng(0x5eed);
    weights
        .iter()
        .map(|&weight| Backend {
            key: rng.next(),
            weight,
        })
        .collect()
}

fn no_active(_: usize) -> u32 {
    0
}

fn flow(flow_hash: u64) -> PickInput {
    PickInput {
        flow_hash,
        source_hash: 0,
    }
}

fn source(source_hash: u64) -> PickInput {
    PickInput {
        flow_hash: 0,
        source_hash,
    }
}

/// Asserts that `counts` (picks per backend) are within `tolerance` (a
/// fraction of the expected share) of `weights`.
fn assert_shares(counts: &[u64], weights: &[u32], tolerance: f64) {
    let picks: u64 = counts.iter().sum();
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
        let expected = w as f64 / total as f64;
        let share = c as f64 / picks as f64;
        assert!(
            (share - expected).abs() <= tolerance * expected,
            "backend {i}: share {share:.5}, expected {expected:.5} (counts {counts:?})"
        );
    }
}

#[test]
fn scheduler_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Scheduler>();
    check::<SchedulerState>();
}

#[test]
fn kind_and_len() {
    let list = backends(&[1, 2, 3]);
    for kind in ALL_KINDS {
        let s = Scheduler::build(kind, &list);
        assert_eq!(s.kind(), kind);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
    }
}

#[test]
fn empty_list_picks_none() {
    for kind in ALL_KINDS {
        let s = Scheduler::build(kind, &[]);
        assert_eq!(s.kind(), kind);
        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
        let mut state = s.new_state();
        for h in [0, 1, u64::MAX] {
            let input = PickInput {
                flow_hash: h,
                source_hash: h,
            };
            assert_eq!(s.pick(&mut state, &input, no_active), None, "{kind:?}");
        }
    }
}

// ---------------------------------------------------------------- rr

#[test]
fn rr_cycles_in_order() {
    let s = Scheduler::build(SchedulerKind::RoundRobin, &backends(&[1, 7, 1, 3]));
    let mut state = s.new_state();
    let picks: Vec<usize> = (0..10)
        .map(|h| s.pick(&mut state, &flow(h), no_active).unwrap())
        .collect();
    assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
}

// ---------------------------------------------------------------- wrr

/// nginx's smooth weighted round robin, written plainly.
fn reference_wrr(weights: &[u32], picks: usize) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::new();
    for _ in 0..picks {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let max = *current.iter().max().unwrap();
        let best = current.iter().position(|&c| c == max).unwrap();
        current[best] -= total;
        out.push(best);
    }
    out
}

#[test]
fn wrr_matches_reference_and_windows_are_exact() {
    let weights = [5, 3, 1, 1];
    let total = 10;
    let s = Scheduler::build(SchedulerKind::WeightedRoundRobin, &backends(&weights));
    let mut state = s.new_state();
    let picks: Vec<usize> = (0..10 * total)
        .map(|h| s.pick(&mut state, &flow(h as u64), no_active).unwrap())
        .collect();
    assert_eq!(picks, reference_wrr(&weights, 10 * total));

    let mut counts = [0u32; 4];
    for &p in &picks {
        counts[p] += 1;
    }
    assert_eq!(counts, [50, 30, 10, 10]);
    // Any window of `total` consecutive picks, aligned or not.
    for window in picks.windows(total) {
        let mut counts = [0u32; 4];
        for &p in window {
            counts[p] += 1;
        }
        assert_eq!(counts, weights, "window {window:?}");
    }
    // Smooth: the weight-5 backend never takes more than 2 in a row.
    assert!(picks.windows(3).all(|w| w != [0, 0, 0]));
}

#[test]
fn wrr_random_flows_follow_weights() {
    // Four workers with their own state; each new flow lands on a random one.
    let weights = [5, 3, 1, 1];
    let s = Scheduler::build(SchedulerKind::WeightedRoundRobin, &backends(&weights));
    let mut states: Vec<SchedulerState> = (0..4).map(|_| s.new_state()).collect();
    let mut rng = Rng(1);
    let mut counts = [0u64; 4];
    for _ in 0..100_003 {
        let h = rng.next();
        let worker = (h >> 60) as usize % states.len();
        let i = s.pick(&mut states[worker], &flow(h), no_active).unwrap();
        counts[i] += 1;
    }
    assert_shares(&counts, &weights, 0.01);
}

/// Found in audit: every worker's rr, wrr and lc state started at the
/// first real, so the first new flow of each worker (after any rebuild)
/// went to the same real. Worker `w` now starts `w` picks into worker 0's
/// sequence: with equal weights the workers' first flows, one each, go to
/// as many reals.
#[test]
fn each_worker_starts_its_sequence_elsewhere() {
    for (kind, weights) in [
        (SchedulerKind::RoundRobin, vec![1, 1, 1, 1]),
        (SchedulerKind::WeightedRoundRobin, vec![1, 1, 1, 1]),
        (SchedulerKind::WeightedRoundRobin, vec![3, 2, 1]),
        (SchedulerKind::LeastConnection, vec![1, 1, 1, 1]),
        (SchedulerKind::WeightedLeastConnection, vec![2, 2, 2, 2]),
    ] {
        let s = Scheduler::build(kind, &backends(&weights));
        let n = weights.len();
        let firsts: Vec<usize> = (0..n)
            .map(|w| {
                let mut state = s.new_state_at(w);
                s.pick(&mut state, &flow(w as u64), no_active).unwrap()
            })
            .collect();
        let mut distinct = firsts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // Equal weights: as many reals as workers. (Weighted: the heavier
        // come first more often, as the sequence below has it.)
        if weights.iter().all(|&x| x == weights[0]) {
            assert_eq!(
                distinct.len(),
                n,
                "{kind:?} {weights:?}: first picks {firsts:?}"
            );
        }
        // Worker 0's sequence, shifted: the same picks over a period.
        let total: u32 = weights.iter().sum();
        let mut zero = s.new_state_at(0);
        let seq: Vec<usize> = (0..2 * total)
            .map(|_| s.pick(&mut zero, &flow(0), no_active).unwrap())
            .collect();
        for w in 1..n {
            let mut state = s.new_state_at(w);
            for (k, expected) in seq[w..w + total as usize].iter().enumerate() {
                let got = s.pick(&mut state, &flow(0), no_active).unwrap();
                assert_eq!(got, *expected, "{kind:?} {weights:?}: worker {w}, pick {k}");
            }
        }
    }
}

#[test]
fn wrr_with_a_foreign_state_stays_weighted() {
    let weights = [5, 3, 1, 1];
    let s = Scheduler::build(SchedulerKind::WeightedRoundRobin, &backends(&weights));
    let other = Scheduler::build(SchedulerKind::WeightedRoundRobin, &backends(&[1, 1]));
    let mut state = other.new_state();
    let mut rng = Rng(2);
    let mut counts = [0u64; 4];
    for _ in 0..100_000 {
        counts[s.pick(&mut state, &flow(rng.next()), no_active).unwrap()] += 1;
    }
    assert_shares(&counts, &weights, 0.05);
}

#[test]
fn wrr_scales_huge_weights_to_stay_in_i64() {
    let list = vec![
        Backend {
            key: 0,
            weight: u32::MAX,
        };
        MAX_BACKENDS
    ];
    let Scheduler::WeightedRoundRobin(wrr) =
        Scheduler::build(SchedulerKind::WeightedRoundRobin, &list)
    else {
        unreachable!()
    };
    let n = MAX_BACKENDS as u64;
    assert!((n + 1) * wrr.total <= i64::MAX as u64);
    assert!(wrr
        .weights
        .iter()
        .all(|&w| w == wrr.weights[0] && w > 1 << 28));
    // Realistic weights are left alone.
    let Scheduler::WeightedRoundRobin(wrr) = Scheduler::build(
        SchedulerKind::WeightedRoundRobin,
        &backends(&[1_000_000, 1, 0]),
    ) else {
        unreachable!()
    };
    assert_eq!(&*wrr.weights, &[1_000_000, 1, 1]);
}

// ---------------------------------------------------------------- lc / wlc

#[test]
fn lc_picks_the_minimum_and_rotates_ties() {
    let s = Scheduler::build(SchedulerKind::LeastConnection, &backends(&[1, 1, 1, 1]));
    let mut state = s.new_state();
    let active = [5, 2, 7, 2];
    let a = |i: usize| active[i];
    assert_eq!(s.pick(&mut state, &flow(0), a), Some(1));
    assert_eq!(s.pick(&mut state, &flow(0), a), Some(3));
    assert_eq!(s.pick(&mut state, &flow(0), a), Some(1));
    // Equal loads take turns.
    let picks: Vec<usize> = (0..8)
        .map(|_| s.pick(&mut state, &flow(0), no_active).unwrap())
        .collect();
    assert_eq!(picks, [2, 3, 0, 1, 2, 3, 0, 1]);
}

#[test]
fn wlc_respects_weights() {
    let s = Scheduler::build(SchedulerKind::WeightedLeastConnection, &backends(&[1, 3]));
    let mut state = s.new_state();
    let active = [10, 10];
    assert_eq!(s.pick(&mut state, &flow(0), |i| active[i]), Some(1));
    // 3/1 > 8/3: backend 1 again; 2/1 < 8/3: backend 0.
    assert_eq!(s.pick(&mut state, &flow(0), |i| [3, 8][i]), Some(1));
    assert_eq!(s.pick(&mut state, &flow(0), |i| [2, 8][i]), Some(0));
    // Extreme values do not overflow.
    let s = Scheduler::build(
        SchedulerKind::WeightedLeastConnection,
        &backends(&[u32::MAX, 1]),
    );
    let mut state = s.new_state();
    assert_eq!(s.pick(&mut state, &flow(0), |_| u32::MAX), Some(0));
}

#[test]
fn lc_and_wlc_match_a_brute_force_minimum() {
    let mut rng = Rng(3);
    for round in 0..500 {
        let n = 1 + (rng.next() % 12) as usize;
        let weights: Vec<u32> = (0..n).map(|_| 1 + (rng.next() % 50) as u32).collect();
        let active: Vec<u32> = (0..n).map(|_| (rng.next() % 20) as u32).collect();
        let list = backends(&weights);

        let lc = Scheduler::build(SchedulerKind::LeastConnection, &list);
        let mut state = lc.new_state();
        state.cursor = rng.next() as usize;
        let i = lc.pick(&mut state, &flow(0), |i| active[i]).unwrap();
        assert_eq!(active[i], *active.iter().min().unwrap(), "round {round}");

        let wlc = Scheduler::build(SchedulerKind::WeightedLeastConnection, &list);
        let mut state = wlc.new_state();
        state.cursor = rng.next() as usize;
        let i = wlc.pick(&mut state, &flow(0), |i| active[i]).unwrap();
        let load = |j: usize| f64::from(active[j]) / f64::from(weights[j]);
        let min = (0..n).map(load).fold(f64::INFINITY, f64::min);
        assert_eq!(load(i), min, "round {round}: {active:?} / {weights:?}");
    }
}

// ---------------------------------------------------------------- sh

#[test]
fn sh_is_sticky_and_follows_weights() {
    let weights = [1, 2, 3, 4];
    let list = backends(&weights);
    let s = Scheduler::build(SchedulerKind::SourceHash, &list);
    let mut state = s.new_state();
    let mut rng = Rng(4);
    let mut counts = [0u64; 4];
    for _ in 0..100_000 {
        let h = rng.next();
        let i = s.pick(&mut state, &source(h), no_active).unwrap();
        // Same source, any flow: same backend, on any worker's state.
        let again = PickInput {
            flow_hash: rng.next(),
            source_hash: h,
        };
        assert_eq!(s.pick(&mut state, &again, no_active), Some(i));
        assert_eq!(s.pick(&mut Default::default(), &again, no_active), Some(i));
        counts[i] += 1;
    }
    assert_shares(&counts, &weights, 0.02);

    // The table itself: each backend within one bucket of its exact share.
    let Scheduler::SourceHash(sh) = &s else {
        unreachable!()
    };
    assert_eq!(sh.table().len(), SH_TABLE_SIZE);
    for (i, &w) in weights.iter().enumerate() {
        let owned = sh.table().iter().filter(|&&b| usize::from(b) == i).count() as f64;
        let exact = SH_TABLE_SIZE as f64 * f64::from(w) / 10.0;
        assert!(
            (owned - exact).abs() < 1.0,
            "backend {i}: {owned} vs {exact}"
        );
    }
    // Interleaved, not in runs: no backend holds 5 buckets in a row.
    assert!(sh.table().windows(5).all(|w| w.iter().any(|&b| b != w[0])));
}

#[test]
fn sh_table_does_not_depend_on_list_order() {
    let list = backends(&[3, 1, 4, 1, 5, 9, 2, 6]);
    let mut reversed = list.clone();
    reversed.reverse();
    let key_table = |list: &[Backend]| -> Vec<u64> {
        let Scheduler::SourceHash(sh) = Scheduler::build(SchedulerKind::SourceHash, list) else {
            unreachable!()
        };
        sh.table()
            .iter()
            .map(|&i| list[usize::from(i)].key)
            .collect()
    };
    assert_eq!(key_table(&list), key_table(&reversed));
}

// ---------------------------------------------------------------- mh

/// The population rule of the module doc, run round by round.
fn reference_maglev(list: &[Backend]) -> Vec<u16> {
    let m = MAGLEV_TABLE_SIZE;
    let weights: Vec<u64> = list.iter().map(|b| u64::from(b.weight.max(1))).collect();
    let max_weight = *weights.iter().max().unwrap();
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| (list[i].key, i));
    let mut next = vec![0u64; list.len()];
    let mut credit = vec![0u64; list.len()];
    let mut table = vec![u16::MAX; m];
    let mut filled = 0;
    while filled < m {
        for &i in &order {
            credit[i] += weights[i];
            if credit[i] < max_weight || filled == m {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = permutation(list[i].key);
            loop {
                let entry = ((offset + next[i] * skip) % m as u64) as usize;
                next[i] += 1;
                if table[entry] == u16::MAX {
                    table[entry] = i as u16;
                    filled += 1;
                    break;
                }
            }
        }
    }
    table
}

fn maglev_table(list: &[Backend]) -> Vec<u16> {
    match Scheduler::build(SchedulerKind::Maglev, list) {
        Scheduler::Maglev(mh) => mh.table().to_vec(),
        _ => unreachable!(),
    }
}

fn owned(table: &[u16], n: usize) -> Vec<u64> {
    let mut counts = vec![0u64; n];
    for &i in table {
        counts[usize::from(i)] += 1;
    }
    counts
}

#[test]
fn mh_matches_the_round_based_reference() {
    for weights in [
        &[1u32][..],
        &[1, 1, 1, 1, 1],
        &[1, 2, 3],
        &[7, 1, 100, 3, 3],
        // Equal weights take a path of their own (no heap).
        &[3, 3, 3, 3],
        &[2; 16],
        &[0, 1, 0],
    ] {
        let list = backends(weights);
        assert_eq!(maglev_table(&list), reference_maglev(&list), "{weights:?}");
    }
}

#[test]
fn mh_is_deterministic() {
    let list = backends(&[4, 1, 2, 2, 9]);
    let table = maglev_table(&list);
    assert_eq!(table, maglev_table(&list));
    assert_eq!(
        Scheduler::build(SchedulerKind::Maglev, &list),
        Scheduler::build(SchedulerKind::Maglev, &list)
    );
    // Pinned: the table must be the same in every process and on every
    // machine (no per-process hash seeds). FNV-1a over the entries.
    let fnv = table.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &e| {
        (h ^ u64::from(e)).wrapping_mul(0x0100_0000_01b3)
    });
    assert_eq!(permutation(0), (6315, 42765));
    assert_eq!(fnv, 5_852_372_485_575_877_487, "table fingerprint");
}

#[test]
fn mh_balances_equal_weights_exactly() {
    let counts = owned(&maglev_table(&backends(&[1; 5])), 5);
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "{counts:?}");
    assert_shares(&counts, &[1; 5], 0.02);
}

#[test]
fn mh_follows_weights() {
    let weights = [1, 2, 3];
    let counts = owned(&maglev_table(&backends(&weights)), 3);
    assert_shares(&counts, &weights, 0.03);
}

#[test]
fn mh_disrupts_few_flows_when_a_backend_leaves_or_returns() {
    let flows: Vec<u64> = {
        let mut rng = Rng(5);
        (0..100_000).map(|_| rng.next()).collect()
    };
    let keys_of = |list: &[Backend]| -> Vec<u64> {
        let s = Scheduler::build(SchedulerKind::Maglev, list);
        let mut state = s.new_state();
        flows
            .iter()
            .map(|&h| list[s.pick(&mut state, &flow(h), no_active).unwrap()].key)
            .collect()
    };
    for n in [3, 5, 10] {
        let list = backends(&vec![1; n]);
        let before = keys_of(&list);
        for gone in 0..n {
            let mut fewer = list.clone();
            let removed = fewer.remove(gone);
            let after = keys_of(&fewer);
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                assert_ne!(*a, removed.key);
                if b != a {
                    moved += 1;
                }
            }
            let limit = flows.len() as f64 / n as f64 * 1.15;
            assert!(
                f64::from(moved) <= limit,
                "n={n}, removed {gone}: {moved} flows moved (limit {limit:.0})"
            );
            // Back in, at the end of the list: every flow returns.
            fewer.push(removed);
            assert_eq!(keys_of(&fewer), before, "n={n}, re-added {gone}");
        }
    }
}

#[test]
fn hash_tables_only_reference_valid_backends() {
    for n in [1, 2, 7, 300] {
        let list = backends(&vec![3; n]);
        assert!(maglev_table(&list).iter().all(|&i| usize::from(i) < n));
        assert_eq!(maglev_table(&list).len(), MAGLEV_TABLE_SIZE);
    }
}

#[test]
fn more_than_max_backends_are_truncated() {
    let list: Vec<Backend> = (0..MAX_BACKENDS as u64 + 10)
        .map(|key| Backend { key, weight: 1 })
        .collect();
    for kind in ALL_KINDS {
        let s = Scheduler::build(kind, &list);
        assert_eq!(s.len(), MAX_BACKENDS, "{kind:?}");
        let mut state = s.new_state();
        let mut rng = Rng(6);
        for _ in 0..1000 {
            let h = rng.next();
            let input = PickInput {
                flow_hash: h,
                source_hash: h,
            };
            let i = s.pick(&mut state, &input, |i| (i % 3) as u32).unwrap();
            assert!(i < MAX_BACKENDS, "{kind:?}");
        }
    }
    let table = maglev_table(&list);
    assert!(table.iter().all(|&i| usize::from(i) < MAX_BACKENDS));
}

#[test]
fn zero_weights_count_as_one() {
    for kind in ALL_KINDS {
        let s = Scheduler::build(kind, &backends(&[0, 0, 0]));
        let mut state = s.new_state();
        for h in 0..100 {
            let input = PickInput {
                flow_hash: h,
                source_hash: h,
            };
            assert!(s.pick(&mut state, &input, no_active).unwrap() < 3);
        }
    }
}

// ---------------------------------------------------------------- any kind

fn kind_strategy() -> impl Strategy<Value = SchedulerKind> {
    prop::sample::select(ALL_KINDS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pick_returns_a_valid_index(
        kind in kind_strategy(),
        list in prop::collection::vec((any::<u64>(), 1u32..100), 0..20),
        foreign in prop::collection::vec((any::<u64>(), 1u32..100), 0..20),
        inputs in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 1..50),
    ) {
        let list: Vec<Backend> =
            list.into_iter().map(|(key, weight)| Backend { key, weight }).collect();
        let foreign: Vec<Backend> =
            foreign.into_iter().map(|(key, weight)| Backend { key, weight }).collect();
        let s = Scheduler::build(kind, &list);
        prop_assert_eq!(s.len(), list.len());
        let mut own = s.new_state();
        // A state made by another scheduler, of any kind and length.
        let mut other = Scheduler::build(SchedulerKind::WeightedRoundRobin, &foreign).new_state();
        for (flow_hash, source_hash, seed) in inputs {
            let input = PickInput { flow_hash, source_hash };
            let active = |i: usize| seed.rotate_left(i as u32 * 7) % 1000;
            for state in [&mut own, &mut other] {
                match s.pick(state, &input, active) {
                    None => prop_assert!(list.is_empty()),
                    Some(i) => prop_assert!(i < list.len()),
                }
            }
        }
    }
}

/// Found in audit: a worker restarted every service's scheduler state at
/// each publish, so a health change of a real of another service (the
/// quiet service's scheduler the very same one) put the quiet service's
/// next new flow on its first real again: with a publish between each,
/// rr and wrr sent all of them there. A kept scheduler keeps its state.
#[test]
fn rr_and_wrr_are_not_restarted_by_a_publish_that_kept_them() {
    use crate::flow::FlowKey;
    use crate::snapshot::{Ids, Snapshot};
    use lb_config::{Config, MacAddr};
    for kind in ["rr", "wrr"] {
        let text = format!(
            "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\n\
             address = \"198.18.0.2/24\"\n\
             [[services]]\nname = \"a\"\nvip = \"198.18.1.100\"\nport = 80\nscheduler = \"{kind}\"\n\
             [[services.reals]]\naddress = \"198.18.0.11\"\n\
             [[services.reals]]\naddress = \"198.18.0.12\"\n\
             [[services.reals]]\naddress = \"198.18.0.13\"\n\
             [[services]]\nname = \"b\"\nvip = \"198.18.1.101\"\nport = 80\n\
             [services.health_check]\nkind = \"tcp\"\n\
             [[services.reals]]\naddress = \"198.18.0.21\"\n\
             [[services.reals]]\naddress = \"198.18.0.22\"\n"
        );
        let config = Config::parse(&text).unwrap();
        let mut ids = Ids::default();
        let mut schedulers = Schedulers::default();
        let mut picks = Vec::new();
        let mut kept = 0;
        let mut prev: Option<Snapshot> = None;
        for g in 1..=9u64 {
            // Service b's second real flaps; service a is untouched.
            let down = g % 2 == 0;
            let snap = Snapshot::compile(
                &config,
                &[MacAddr([2, 0, 0, 0, 0, 2])],
                g,
                &mut ids,
                |s, a, _| !(down && s == "b" && a.to_string() == "198.18.0.22"),
            )
            .unwrap();
            if let Some(p) = &prev {
                kept += usize::from(std::sync::Arc::ptr_eq(
                    &p.services[0].scheduler,
                    &snap.services[0].scheduler,
                ));
            }
            schedulers.adopt(&snap);
            let key = FlowKey {
                proto: 6,
                client: std::net::Ipv4Addr::new(198, 19, 0, 1),
                client_port: 1000 + g as u16,
                vip: std::net::Ipv4Addr::new(198, 18, 1, 100),
                vip_port: 80,
            };
            let active = vec![0; crate::snapshot::MAX_REALS];
            picks.push(schedulers.choose(&snap, 0, &key, &active, &[]).unwrap());
            prev = Some(snap);
        }
        assert_eq!(kept, 8, "{kind}: service a's scheduler kept");
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1, 2], "{kind}");
    }
}

/// An `sh` table has at least 16 buckets per backend (found in audit: with
/// more backends than its 4,093 buckets, 907 of 5,000 reals were never
/// picked), and up to 255 backends the 4,093 it always had, so that no
/// client of such a service moves on upgrade.
#[test]
fn every_sh_backend_owns_buckets_however_many_there_are() {
    for n in [1usize, 255, 256, 5_000, 65_535] {
        let list = backends(&vec![1; n]);
        let s = Scheduler::build(SchedulerKind::SourceHash, &list);
        let Scheduler::SourceHash(sh) = &s else {
            unreachable!()
        };
        if n <= 255 {
            assert_eq!(sh.table().len(), SH_TABLE_SIZE, "{n} backends");
        }
        assert!(sh.table().len() >= 16 * n, "{n} backends");
        let mut owned = vec![0u32; n];
        for &b in sh.table() {
            owned[usize::from(b)] += 1;
        }
        let fewest = owned.iter().min().copied().unwrap();
        assert!(fewest >= 16, "{n} backends: one owns {fewest} buckets");
    }
}

/// A new flow to a pool of more reals than `wrr` passes over per pick, or
/// than `lc` and `wlc` compare, costs a bounded amount of work (found in
/// audit: a pass over all 65,535 reals, some 50 µs, for every SYN a flood
/// sent): `wrr` steps through a table of the reals' shares (at least 16
/// slots each, so every real is picked, by its weight within a slot), and
/// `lc` and `wlc` compare at most 256 reals from their cursor, which goes
/// round the pool. Small pools pick as they always did.
#[test]
fn large_pools_pick_in_bounded_work() {
    use super::least::SCAN_MAX;
    use super::wrr::SMOOTH_MAX;
    let n = 5_000;
    let weights: Vec<u32> = (0..n).map(|i| 1 + (i % 3) as u32).collect();
    let list = backends(&weights);
    // wrr: one pass over the table picks each real its share, within one.
    let s = Scheduler::build(SchedulerKind::WeightedRoundRobin, &list);
    let mut state = s.new_state();
    let Scheduler::WeightedRoundRobin(wrr) = &s else {
        unreachable!()
    };
    assert!(wrr.stepped());
    let period = 262_139; // the sh table for 5,000 backends
    let mut counts = vec![0u32; n];
    for h in 0..period {
        counts[s.pick(&mut state, &flow(h), no_active).unwrap()] += 1;
    }
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    for (i, &w) in weights.iter().enumerate() {
        let exact = period as f64 * f64::from(w) / total as f64;
        assert!(
            (f64::from(counts[i]) - exact).abs() < 1.0,
            "real {i}: {} picks for a share of {exact}",
            counts[i]
        );
    }
    // Workers start at different places of the table.
    let firsts: std::collections::HashSet<usize> = (0..4)
        .map(|w| s.pick(&mut s.new_state_at(w), &flow(0), no_active).unwrap())
        .collect();
    assert!(firsts.len() > 1);
    // Up to SMOOTH_MAX reals: the smooth sequence, as before.
    let small = Scheduler::build(
        SchedulerKind::WeightedRoundRobin,
        &backends(&[1; SMOOTH_MAX]),
    );
    let Scheduler::WeightedRoundRobin(small) = &small else {
        unreachable!()
    };
    assert!(!small.stepped());
    // lc, wlc: at most SCAN_MAX reals asked about per pick; the least
    // loaded of them taken; and over enough picks every real.
    for kind in [
        SchedulerKind::LeastConnection,
        SchedulerKind::WeightedLeastConnection,
    ] {
        let s = Scheduler::build(kind, &list);
        let mut state = s.new_state();
        let asked = std::cell::Cell::new(0usize);
        let idle = 100; // the one real without flows, within the window
        let active = |i: usize| {
            asked.set(asked.get() + 1);
            if i == idle {
                0
            } else {
                5
            }
        };
        assert_eq!(s.pick(&mut state, &flow(0), active), Some(idle), "{kind:?}");
        asked.set(0);
        let mut seen = vec![false; n];
        for h in 0..(n / SCAN_MAX + 1) * 2 {
            let before = asked.get();
            let i = s
                .pick(&mut state, &flow(h as u64), |_| {
                    asked.set(asked.get() + 1);
                    7
                })
                .unwrap();
            assert!(
                asked.get() - before <= SCAN_MAX,
                "{kind:?}: {}",
                asked.get() - before
            );
            seen[i] = true;
        }
        // Equal loads: each pick takes the first of its window and the
        // cursor moves on by one, so picks walk the pool.
        assert!(
            seen.iter().filter(|&&s| s).count() >= (n / SCAN_MAX + 1) * 2,
            "{kind:?}"
        );
    }
}
