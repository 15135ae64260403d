//! A process's resident memory by kind, from `/proc/PID/status`: the one reader the
//! benchmarks and tests share.

/// A process's resident memory, by kind, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resident {
    /// Anonymous pages: heap, stacks.
    pub anon: u64,
    /// Pages of mapped files (the binary, libraries, a mapped database).
    pub file: u64,
    /// Shared memory pages.
    pub shmem: u64,
}

impl Resident {
    /// The whole resident set (what `/proc/PID/statm` counts as resident).
    pub fn total(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// Resident memory of process `pid` (this process if `None`): anonymous pages (`RssAnon`),
/// pages of mapped files (`RssFile`) and shared memory (`RssShmem`); zeros where it cannot
/// be read. A process that maps its database file (etcd's bbolt) counts the file's cached
/// pages in its resident set, one that reads it (courier's redb) does not, so the two are
/// compared by their anonymous memory.
pub fn resident(pid: Option<u32>) -> Resident {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Resident {
        anon: kib("RssAnon:"),
        file: kib("RssFile:"),
        shmem: kib("RssShmem:"),
    }
}

#[cfg(test)]
mod tests {
    use super::resident;

    #[test]
    fn this_process_has_anonymous_and_file_pages() {
        let r = resident(None);
        assert!(r.anon > 0 && r.file > 0, "{r:?}");
        assert!(r.total() >= r.anon + r.file);
    }
}
