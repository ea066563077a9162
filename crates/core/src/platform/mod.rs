//! Operating-system specifics that have no better home: Windows consoles, control events,
//! windows and process trees (used by the supervisor's stop ladder), and whether we run
//! under Wine (CI runs the Windows build there; `docs/windows.md` lists what differs).

pub mod keyfile;
#[cfg(windows)]
pub mod windows;

/// Wine's version when this Windows program runs under Wine (ntdll exports
/// `wine_get_version`), `None` on real Windows and on other systems.
pub fn wine_version() -> Option<String> {
    #[cfg(windows)]
    {
        windows::wine_version()
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// Small pages only for this process (Linux; elsewhere nothing). mimalloc asks for
/// transparent huge pages on its 1 GiB arena, so touching a few bytes of a 2 MiB range
/// commits all of it: idle in mock mode that was 35 MiB of anonymous memory for ~15 MiB
/// in use. For the binaries to call first thing in `main` (their allocator, their
/// choice); pages faulted before that stay as they are.
pub fn small_pages_only() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        // Only memory is at stake: go on with what the system gives.
        eprintln!("note: could not turn off transparent huge pages: {e}");
    }
}

/// Every process descending from `root` (not `root` itself), given `(pid, parent)` pairs.
/// Cycles (pid reuse can make one) are cut.
pub fn tree_of(root: u32, pairs: &[(u32, u32)]) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in pairs {
            if ppid == parent && pid != root && pid != 0 && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_of_finds_children_and_grandchildren_only() {
        let pairs = [(10, 1), (11, 10), (12, 11), (13, 1), (14, 12), (0, 0)];
        let mut t = tree_of(10, &pairs);
        t.sort();
        assert_eq!(t, vec![11, 12, 14]);
        assert!(tree_of(13, &pairs).is_empty());
    }

    #[test]
    fn tree_of_survives_cycles_from_pid_reuse() {
        let pairs = [(2, 1), (3, 2), (1, 3)];
        let mut t = tree_of(1, &pairs);
        t.sort();
        assert_eq!(t, vec![2, 3]);
    }

    #[test]
    fn not_wine_here() {
        #[cfg(not(windows))]
        assert_eq!(wine_version(), None);
    }
}
