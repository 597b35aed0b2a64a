//! The share planner: given an AccountQuota's total and each space's share and use, the new shares. Pure, so every
//! guarantee of the quota's arithmetic (never above the total, never below use) is tested here without a cluster.

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

/// The new shares: each space keeps what it uses, and the rest of the total is split evenly in whole units (thousandths
/// for CPU), the odd units going first to the spaces that use least (so an idle space can always start something
/// while there is anything left), then by name. A total already overrun
/// (objects older than the quota) is handed out to the users in name order, so the shares still add up to no more.
#[must_use]
pub fn plan(total: &BTreeMap<String, i128>, shares: &[Share]) -> Vec<BTreeMap<String, i128>> {
    let mut planned = vec![BTreeMap::new(); shares.len()];
    for (key, &limit) in total {
        let used = |s: &Share| s.used.get(key).copied().unwrap_or(0).max(0);
        let unit = if key.contains("cpu") || limit % 1000 != 0 {
            1
        } else {
            1000
        };
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
        let units = (limit - sum_used) / unit;
        let count = i128::try_from(open.len()).unwrap_or(i128::MAX).max(1);
        let (each, mut odd) = (units / count, units % count);
        let mut order = open.clone();
        // Least used first, then by name (the shares come sorted, and the sort is stable).
        order.sort_by_key(|i| used(&shares[*i]));
        let mut extra = vec![0_i128; shares.len()];
        for i in order {
            if odd == 0 {
                break;
            }
            extra[i] = 1;
            odd -= 1;
        }
        for (i, (share, new)) in shares.iter().zip(&mut planned).enumerate() {
            let slack = if share.closing { 0 } else { (each + extra[i]) * unit };
            new.insert(key.clone(), used(share) + slack);
        }
    }
    planned
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

    #[test]
    fn headroom_moves_to_the_idle_spaces_first() {
        // a runs two pods; b and c are idle: each of them may start one.
        let shares = [
            share("a", &[("pods", 2000)], &[("pods", 2000)]),
            share("b", &[("pods", 1000)], &[]),
            share("c", &[("pods", 1000)], &[]),
        ];
        let planned = plan(&total(&[("pods", 4000)]), &shares);
        assert_eq!(
            planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(),
            [2000, 1000, 1000]
        );
        // a's pods are gone and c runs one: the two free pods go to the idle a and b.
        let shares = [
            share("a", &[("pods", 2000)], &[]),
            share("b", &[("pods", 1000)], &[]),
            share("c", &[("pods", 1000)], &[("pods", 1000)]),
        ];
        let planned = plan(&total(&[("pods", 4000)]), &shares);
        assert_eq!(
            planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(),
            [1000, 1000, 2000]
        );
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
    fn a_closing_space_gets_no_headroom() {
        let mut closing = share("a", &[("pods", 2000)], &[("pods", 1000)]);
        closing.closing = true;
        let planned = plan(&total(&[("pods", 4000)]), &[closing, share("b", &[], &[])]);
        assert_eq!(planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(), [1000, 3000]);
    }
}
