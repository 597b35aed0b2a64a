//! The share planner: given an AccountQuota's total and each space's share and use, the new shares. Pure, so every
//! guarantee of the quota's arithmetic (never above the total, never below use, headroom where the use is) is tested
//! here without a cluster.

use std::collections::BTreeMap;

/// One space's share as read: its current `hard`, what is `used` (thousandths), and whether it may grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub space: String,
    pub hard: BTreeMap<String, i128>,
    pub used: BTreeMap<String, i128>,
    /// A terminating space gets no headroom.
    pub closing: bool,
}

/// The new shares. Each space keeps what it uses; the rest of the total (the headroom) is handed out in whole units
/// (thousandths for CPU):
/// - while there is at least one unit for every open space, each gets one, so any space can start something;
/// - the rest goes by weight, each space weighing what it uses plus a step (a (2 × spaces)th of the total): a busy
///   space gets most of it, an idle one a little, and one space alone can grow to the whole total as the others'
///   units move to it; odd units go to the largest remainders, then the busiest, then by name.
///
/// The result depends only on the use and the total, so a pass that wrote it finds nothing to change. A total already
/// overrun (objects older than the quota) is handed out to the users in name order, so the shares still add up to no
/// more.
#[must_use]
pub fn plan(total: &BTreeMap<String, i128>, shares: &[Share]) -> Vec<BTreeMap<String, i128>> {
    let mut planned = vec![BTreeMap::new(); shares.len()];
    for (key, &limit) in total {
        let used = |s: &Share| s.used.get(key).copied().unwrap_or(0).max(0);
        let unit = unit_of(key, limit);
        let sum_used: i128 = shares.iter().map(used).sum();
        if sum_used >= limit {
            let mut left = limit.max(0);
            for (share, new) in shares.iter().zip(&mut planned) {
                let take = used(share).min(left);
                new.insert(key.clone(), take);
                left -= take;
            }
            continue;
        }
        let open: Vec<usize> = (0..shares.len()).filter(|i| !shares[*i].closing).collect();
        let slack = headroom(limit, unit, &open, &shares.iter().map(used).collect::<Vec<_>>());
        for (i, (share, new)) in shares.iter().zip(&mut planned).enumerate() {
            new.insert(key.clone(), used(share) + slack[i] * unit);
        }
    }
    planned
}

/// The whole unit shares of `key` move in (thousandths): a mebibyte of memory or storage, a thousandth of a CPU, one
/// of anything counted; a thousandth where the total is not a whole number of them.
fn unit_of(key: &str, limit: i128) -> i128 {
    const MEBIBYTE: i128 = (1 << 20) * 1000;
    let unit = if key.contains("cpu") {
        1
    } else if key.contains("memory") || key.contains("storage") {
        MEBIBYTE
    } else {
        1000
    };
    if limit % unit == 0 {
        unit
    } else {
        1
    }
}

/// Each space's headroom in units, given what each uses (`used`, thousandths) and which may grow (`open`).
fn headroom(limit: i128, unit: i128, open: &[usize], used: &[i128]) -> Vec<i128> {
    let mut slack = vec![0_i128; used.len()];
    let count = i128::try_from(open.len()).unwrap_or(i128::MAX);
    if count == 0 {
        return slack;
    }
    let mut left = (limit - used.iter().sum::<i128>()) / unit;
    if left >= count {
        for &i in open {
            slack[i] = 1;
        }
        left -= count;
    }
    let step = (limit / (2 * count)).max(unit);
    let weight = |i: usize| used[i] + step;
    let sum: i128 = open.iter().map(|&i| weight(i)).sum();
    let mut remainders = Vec::with_capacity(open.len());
    let mut given = 0;
    for &i in open {
        let exact = left * weight(i);
        slack[i] += exact / sum;
        given += exact / sum;
        remainders.push((exact % sum, used[i], i));
    }
    // Largest remainder first, then the busiest, then by name (the shares come sorted, and the sort is stable).
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    for &(_, _, i) in remainders.iter().take(usize::try_from(left - given).unwrap_or(0)) {
        slack[i] += 1;
    }
    slack
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(space: &str, hard: &[(&str, i128)], used: &[(&str, i128)]) -> Share {
        let map = |pairs: &[(&str, i128)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        Share {
            space: space.to_owned(),
            hard: map(hard),
            used: map(used),
            closing: false,
        }
    }

    fn total(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn sum(planned: &[BTreeMap<String, i128>], key: &str) -> i128 {
        planned.iter().map(|p| p[key]).sum()
    }

    #[test]
    fn idle_spaces_split_the_total_evenly_in_whole_units() {
        let shares = [share("a", &[], &[]), share("b", &[], &[]), share("c", &[], &[])];
        let planned = plan(&total(&[("pods", 4000), ("requests.cpu", 2000)]), &shares);
        let pods: Vec<i128> = planned.iter().map(|p| p["pods"]).collect();
        assert_eq!(pods, [2000, 1000, 1000]);
        let cpu: Vec<i128> = planned.iter().map(|p| p["requests.cpu"]).collect();
        assert_eq!(cpu, [667, 667, 666]);
    }

    /// Pods of `pods[i]` units (thousandths) used in each space, under the shares `hard`.
    fn with_use(names: &[&str], hard: &[BTreeMap<String, i128>], pods: &[i128]) -> Vec<Share> {
        names
            .iter()
            .zip(hard)
            .zip(pods)
            .map(|((name, hard), pods)| Share {
                space: (*name).to_owned(),
                hard: hard.clone(),
                used: [("pods".to_owned(), *pods)].into(),
                closing: false,
            })
            .collect()
    }

    fn pods(planned: &[BTreeMap<String, i128>]) -> Vec<i128> {
        planned.iter().map(|p| p["pods"] / 1000).collect()
    }

    #[test]
    fn a_busy_space_alone_grows_to_the_whole_total_and_gives_it_back_when_it_shrinks() {
        let total = total(&[("pods", 4000)]);
        let names = ["a", "b", "c"];
        let mut hard = plan(
            &total,
            &with_use(&names, &[BTreeMap::new(), BTreeMap::new(), BTreeMap::new()], &[0; 3]),
        );
        assert_eq!(pods(&hard), [2, 1, 1]);
        // a starts pods one after another, a pass after each: every one fits, up to the whole total.
        let mut used = [0_i128; 3];
        let mut seen = Vec::new();
        for _ in 0..4 {
            assert!(used[0] < hard[0]["pods"], "refused at {used:?} under {:?}", pods(&hard));
            used[0] += 1000;
            hard = plan(&total, &with_use(&names, &hard, &used));
            seen.push(pods(&hard));
        }
        assert_eq!(seen, [vec![2, 1, 1], vec![3, 1, 0], vec![4, 0, 0], vec![4, 0, 0]]);
        // a's pods gone: every space may start one again, and now c grows the same way.
        used = [0; 3];
        hard = plan(&total, &with_use(&names, &hard, &used));
        assert_eq!(pods(&hard), [2, 1, 1]);
        for _ in 0..4 {
            assert!(used[2] < hard[2]["pods"], "refused at {used:?} under {:?}", pods(&hard));
            used[2] += 1000;
            hard = plan(&total, &with_use(&names, &hard, &used));
        }
        assert_eq!(pods(&hard), [0, 0, 4]);
    }

    #[test]
    fn a_busy_space_gets_most_of_the_headroom_and_an_idle_one_a_little() {
        let shares = [
            share("a", &[], &[("requests.cpu", 1000)]),
            share("b", &[], &[]),
            share("c", &[], &[]),
        ];
        let planned = plan(&total(&[("requests.cpu", 4000)]), &shares);
        let cpu: Vec<i128> = planned.iter().map(|p| p["requests.cpu"]).collect();
        // 3000m free: 1m each, then the other 2997m by weight 1666 : 666 : 666 (what each uses plus a step of 666m).
        assert_eq!(cpu, [1000 + 1 + 1665, 1 + 666, 1 + 666]);
        assert_eq!(cpu.iter().sum::<i128>(), 4000);
    }

    #[test]
    fn shares_never_add_up_to_more_than_the_total_and_never_below_use() {
        let cases = [
            vec![share("a", &[], &[("pods", 3000)]), share("b", &[], &[("pods", 1000)])],
            vec![share("a", &[], &[("pods", 5000)]), share("b", &[], &[("pods", 1000)])],
            vec![
                share("a", &[], &[]),
                share("b", &[], &[("pods", 4000)]),
                share("c", &[], &[]),
            ],
        ];
        for shares in cases {
            let planned = plan(&total(&[("pods", 4000)]), &shares);
            assert!(sum(&planned, "pods") <= 4000, "{planned:?}");
            for (share, new) in shares.iter().zip(&planned) {
                let used = share.used.get("pods").copied().unwrap_or(0);
                assert!(
                    new["pods"] >= used.min(4000 - (sum(&planned, "pods") - new["pods"])),
                    "{planned:?}"
                );
            }
        }
    }

    #[test]
    fn memory_moves_in_mebibytes_and_cpu_in_millicores() {
        let shares = [share("a", &[], &[]), share("b", &[], &[]), share("c", &[], &[])];
        let gib = (1 << 30) * 1000;
        let planned = plan(&total(&[("limits.memory", 8 * gib), ("requests.cpu", 1000)]), &shares);
        for p in &planned {
            assert_eq!(p["limits.memory"] % ((1 << 20) * 1000), 0, "{planned:?}");
        }
        assert_eq!(planned.iter().map(|p| p["limits.memory"]).sum::<i128>(), 8 * gib);
        assert_eq!(
            planned.iter().map(|p| p["requests.cpu"]).collect::<Vec<_>>(),
            [334, 333, 333]
        );
    }

    #[test]
    fn a_closing_space_gets_no_headroom() {
        let mut closing = share("a", &[("pods", 2000)], &[("pods", 1000)]);
        closing.closing = true;
        let planned = plan(&total(&[("pods", 4000)]), &[closing, share("b", &[], &[])]);
        assert_eq!(planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(), [1000, 3000]);
    }

    proptest::proptest! {
        /// Random creates and deletes of one unit in random spaces, each admitted only within its share as
        /// kube-apiserver admits, and a pass after some of them (passes lag behind use).
        #[test]
        fn under_any_sequence_the_shares_hold_and_a_refused_space_is_served_by_the_next_pass(
            spaces in 1_usize..6,
            limit in 1_i128..20,
            steps in proptest::collection::vec((0_usize..6, proptest::bool::ANY, proptest::bool::ANY), 1..200),
        ) {
            let total: BTreeMap<String, i128> = [("pods".to_owned(), limit * 1000)].into();
            let names: Vec<String> = (0..spaces).map(|i| format!("s{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut used = vec![0_i128; spaces];
            let mut hard = plan(&total, &with_use(&names, &vec![BTreeMap::new(); spaces], &used));
            // The space whose create was refused since the last pass.
            let mut refused: Option<usize> = None;
            for (space, create, pass) in steps {
                let space = space % spaces;
                if create {
                    if used[space] < hard[space]["pods"] {
                        used[space] += 1000;
                    } else {
                        refused = Some(space);
                    }
                } else if used[space] > 0 {
                    used[space] -= 1000;
                }
                if !pass {
                    continue;
                }
                let shares = with_use(&names, &hard, &used);
                hard = plan(&total, &shares);
                let sum: i128 = hard.iter().map(|h| h["pods"]).sum();
                proptest::prop_assert!(sum <= limit * 1000, "{:?} over {limit}", pods(&hard));
                for (h, u) in hard.iter().zip(&used) {
                    proptest::prop_assert!(h["pods"] >= *u, "{:?} below use {used:?}", pods(&hard));
                }
                // What a pass wrote, the next one leaves as it is.
                proptest::prop_assert_eq!(&plan(&total, &with_use(&names, &hard, &used)), &hard);
                // A refused space can start one more after the pass whenever the account has a free unit per space,
                // and the busiest space whenever it has any.
                if let Some(x) = refused.take() {
                    let free = limit * 1000 - used.iter().sum::<i128>();
                    let busiest = used.iter().enumerate().all(|(i, u)| i == x || *u < used[x]);
                    if free >= 1000 * i128::try_from(spaces).unwrap_or(0) || (busiest && free >= 1000) {
                        proptest::prop_assert!(
                            hard[x]["pods"] > used[x],
                            "s{x} refused again: {:?} with {used:?}", pods(&hard)
                        );
                    }
                }
            }
        }
    }
}
