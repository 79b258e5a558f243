/*!
One bug, one finding: merging a campaign's findings whose minimized cases show they are one bug.

Findings are first deduplicated by signature. A bug can still wear several: a device-side overflow
may end one case in an engine error, another in a broken invariant and a third in a signal. After
minimization two findings are reported as one when

* their minimized cases are equal (graph, parameters, engine settings, faults, ops: the seed and
  provenance are not part of a case's meaning), or
* one's minimized case, run again, gives the other's signature (`also_gives`: signatures observed
  when re-running each minimized case).

The relation is closed transitively. The finding first seen (lowest first case, as the campaign
orders them) stays, the others become its aliases: their signatures are listed, their counts added.

[`group`] is a pure function of signatures, minimized cases and observations, so it is tested on
plain data; [`merge_findings`] applies it to a campaign's findings.
*/

use std::sync::atomic::Ordering;

use crate::case::Case;
use crate::client::run::run_isolated;
use crate::client::signature::Signature;
use crate::hunt::campaign::minimizer::FindingMinimizer;
use crate::hunt::campaign::summary::Finding;
use crate::hunt::watchdog::CaseCost;
use crate::isolate::WorkerSlot;

/// What deciding whether two findings are one bug needs of each.
#[derive(Clone, Copy, Debug)]
pub struct FindingKey<'a> {
    /// Its signature.
    pub signature: &'a Signature,
    /// Its minimized case, if it was minimized.
    pub minimized: Option<&'a Case>,
    /// Signatures its minimized case gave when run again (its own, or another's).
    pub also_gives: &'a [Signature],
}

/// One bug: the index of the finding that stays, and those merged into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The finding kept (the lowest index of the group).
    pub primary: usize,
    /// The findings that are the same bug, ascending.
    pub aliases: Vec<usize>,
}

/// Whether two cases mean the same run: everything but the seed they were generated from, the
/// expectation and the provenance.
pub fn same_case(a: &Case, b: &Case) -> bool {
    a.backend == b.backend
        && a.faults == b.faults
        && a.params == b.params
        && a.engine == b.engine
        && a.graph == b.graph
        && a.ops == b.ops
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Groups findings that are one bug (see the module docs); every index appears in exactly one
/// group, groups ordered by their primary.
pub fn group(items: &[FindingKey<'_>]) -> Vec<Group> {
    let n = items.len();
    let mut parent: Vec<usize> = (0..n).collect();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&items[i], &items[j]);
            let equal = matches!((a.minimized, b.minimized), (Some(x), Some(y)) if same_case(x, y));
            let crosses = a.also_gives.contains(b.signature) || b.also_gives.contains(a.signature);
            if equal || crosses {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                // The lower index becomes the root, so the root of a group is its primary.
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        if root == i {
            groups.push(Group {
                primary: i,
                aliases: Vec::new(),
            });
        } else if let Some(g) = groups.iter_mut().find(|g| g.primary == root) {
            g.aliases.push(i);
        }
    }
    groups
}

/// A campaign's findings merged by [`group`]: each kept finding lists its aliases' signatures and
/// counts their occurrences. `also_gives[i]`: what re-running finding `i`'s minimized case gave
/// (may be shorter than `findings`: missing means nothing observed).
pub fn merge_findings(mut findings: Vec<Finding>, also_gives: &[Vec<Signature>]) -> Vec<Finding> {
    // First seen first, so that the primary of a group is the finding the campaign met first.
    findings.sort_by_key(|f| f.first_case);
    let groups = {
        let keys: Vec<FindingKey<'_>> = findings
            .iter()
            .enumerate()
            .map(|(i, f)| FindingKey {
                signature: &f.signature,
                minimized: f.minimized.as_ref(),
                also_gives: also_gives.get(i).map_or(&[], Vec::as_slice),
            })
            .collect();
        group(&keys)
    };
    let mut slots: Vec<Option<Finding>> = findings.into_iter().map(Some).collect();
    let mut merged = Vec::with_capacity(groups.len());
    for g in groups {
        let Some(mut primary) = slots[g.primary].take() else {
            continue;
        };
        for a in g.aliases {
            if let Some(alias) = slots[a].take() {
                primary.count += alias.count;
                primary.aliases.push(alias.signature);
                primary.aliases.extend(alias.aliases);
            }
        }
        merged.push(primary);
    }
    merged
}

/// Re-runs each minimized case (but a hang's: its re-run costs a watchdog, and a hang's signature
/// names its op whatever kernel ran) once in `slot`, then [`merge_findings`].
pub fn rerun_and_merge(
    mut findings: Vec<Finding>,
    slot: &mut WorkerSlot,
    how: &FindingMinimizer<'_>,
) -> Vec<Finding> {
    findings.sort_by_key(|f| f.first_case);
    if findings.len() < 2 {
        return findings;
    }
    let also_gives: Vec<Vec<Signature>> = findings
        .iter()
        .map(|f| match &f.minimized {
            Some(case) if f.signature.class != "hang" && !how.stop.load(Ordering::Relaxed) => {
                let limit = how
                    .watchdog
                    .limit_for(CaseCost::of(case, how.capacity_invariance));
                let generous = how.watchdog.confirm_limit(&limit).unwrap_or(limit.limit);
                let (verdict, _) = run_isolated(slot, case, how.capacity_invariance, generous);
                verdict.signature().cloned().into_iter().collect()
            }
            _ => Vec::new(),
        })
        .collect();
    merge_findings(findings, &also_gives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{CaseGraph, Op};

    fn sig(s: &str) -> Signature {
        s.parse().unwrap()
    }

    fn case(nodes: u64, seed: u64) -> Case {
        let mut c = Case::new(CaseGraph {
            num_nodes: nodes,
            ..CaseGraph::default()
        });
        c.seed = seed;
        c.ops = vec![Op::Step { count: 1 }];
        c
    }

    #[test]
    fn equal_minimized_cases_are_one_finding_whatever_their_seed() {
        let (a, b, c) = (
            sig("engine-error:step"),
            sig("signal:SIGSEGV:step"),
            sig("invariant:x:step"),
        );
        let (one, same, other) = (case(1, 5), case(1, 9), case(2, 5));
        let keys = [
            FindingKey {
                signature: &a,
                minimized: Some(&one),
                also_gives: &[],
            },
            FindingKey {
                signature: &b,
                minimized: Some(&other),
                also_gives: &[],
            },
            FindingKey {
                signature: &c,
                minimized: Some(&same),
                also_gives: &[],
            },
        ];
        assert_eq!(
            group(&keys),
            vec![
                Group {
                    primary: 0,
                    aliases: vec![2]
                },
                Group {
                    primary: 1,
                    aliases: vec![]
                },
            ]
        );
        // Not minimized: nothing to compare, nothing merged.
        let keys = [
            FindingKey {
                signature: &a,
                minimized: None,
                also_gives: &[],
            },
            FindingKey {
                signature: &c,
                minimized: None,
                also_gives: &[],
            },
        ];
        assert_eq!(group(&keys).len(), 2);
    }

    #[test]
    fn reproducing_anothers_signature_merges_transitively() {
        let (a, b, c, d) = (
            sig("hang:sssp"),
            sig("invariant:y:step"),
            sig("signal:SIGSEGV:step"),
            sig("engine-error:step"),
        );
        let (ca, cb, cc, cd) = (case(1, 0), case(2, 0), case(3, 0), case(4, 0));
        let gives_c = [c.clone()];
        let gives_a = [a.clone()];
        let keys = [
            FindingKey {
                signature: &a,
                minimized: Some(&ca),
                also_gives: &[],
            },
            FindingKey {
                signature: &b,
                minimized: Some(&cb),
                also_gives: &gives_c,
            },
            FindingKey {
                signature: &c,
                minimized: Some(&cc),
                also_gives: &gives_a,
            },
            FindingKey {
                signature: &d,
                minimized: Some(&cd),
                also_gives: &[],
            },
        ];
        assert_eq!(
            group(&keys),
            vec![
                Group {
                    primary: 0,
                    aliases: vec![1, 2]
                },
                Group {
                    primary: 3,
                    aliases: vec![]
                },
            ]
        );
    }
}
