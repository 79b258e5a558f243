/*!
Delta debugging (Zeller's ddmin): the smallest subsequence of a list for which a test still holds.

Generic over the item type and the test, so that the minimizer applies the same search to operations,
nodes and edges. The test is "the case still fails with the same signature"; a test that is expensive
(a run in an isolated worker) is called as few times as the algorithm allows, and a budget bounds it.
*/

/// How a search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No smaller subsequence passes the test at granularity 1: 1-minimal.
    Minimal,
    /// The test budget ran out first; the result is smaller but maybe not minimal.
    Budget,
}

/// Reduces `items` to a smaller subsequence for which `test` holds, calling `test` at most `budget`
/// times. `test(&items)` is assumed to hold on entry.
///
/// ```
/// use forcefield_harness::case::ddmin::{ddmin, Stop};
/// let (kept, stop) = ddmin((0..100).collect(), 10_000, |s: &[i32]| s.contains(&7) && s.contains(&42));
/// assert_eq!(kept, vec![7, 42]);
/// assert_eq!(stop, Stop::Minimal);
/// ```
pub fn ddmin<T: Clone>(
    mut items: Vec<T>,
    budget: usize,
    mut test: impl FnMut(&[T]) -> bool,
) -> (Vec<T>, Stop) {
    let mut calls = 0usize;
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let mut reduced = false;
        // Try each complement first: removing one chunk is the common win.
        let mut start = 0;
        while start < items.len() {
            if calls >= budget {
                return (items, Stop::Budget);
            }
            let end = (start + chunk).min(items.len());
            let complement: Vec<T> = items[..start]
                .iter()
                .chain(&items[end..])
                .cloned()
                .collect();
            calls += 1;
            if test(&complement) {
                items = complement;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            start = end;
        }
        if reduced {
            continue;
        }
        if n >= items.len() {
            break;
        }
        n = (2 * n).min(items.len());
    }
    if items.len() == 1 && calls < budget && test(&[]) {
        return (Vec::new(), Stop::Minimal);
    }
    (items, Stop::Minimal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_single_culprit() {
        let (kept, stop) = ddmin((0..64).collect::<Vec<u32>>(), 1000, |s| s.contains(&33));
        assert_eq!(kept, vec![33]);
        assert_eq!(stop, Stop::Minimal);
    }

    #[test]
    fn keeps_order_and_interacting_pairs() {
        let (kept, _) = ddmin((0..50).collect::<Vec<u32>>(), 1000, |s| {
            let a = s.iter().position(|&x| x == 10);
            let b = s.iter().position(|&x| x == 40);
            matches!((a, b), (Some(a), Some(b)) if a < b)
        });
        assert_eq!(kept, vec![10, 40]);
    }

    #[test]
    fn empty_when_the_test_always_holds() {
        let (kept, _) = ddmin(vec![1, 2, 3], 100, |_| true);
        assert!(kept.is_empty());
    }

    #[test]
    fn stops_at_the_budget() {
        let mut calls = 0;
        let (kept, stop) = ddmin((0..1000).collect::<Vec<u32>>(), 5, |s| {
            calls += 1;
            s.contains(&999)
        });
        assert_eq!(stop, Stop::Budget);
        assert!(calls <= 5);
        assert!(kept.contains(&999));
    }
}
