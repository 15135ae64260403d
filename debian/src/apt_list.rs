//! `apt list --upgradable` as the oracle of the upgrades chosen here: its output read back
//! (tests compare) and its running time (benchmarks compare).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One upgrade as apt lists it: name, candidate version, architecture, installed version.
pub type Listed = (String, String, String, String);

/// Reads `name/suite[,suite] candidate arch [upgradable from: installed]` lines; other
/// lines (`Listing...`, warnings) are skipped.
pub fn parse_upgradable(text: &str) -> BTreeSet<Listed> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once('/')?;
            let mut words = rest.split_ascii_whitespace();
            let (_suites, candidate, arch) = (words.next()?, words.next()?, words.next()?);
            let installed = rest.split_once("[upgradable from: ")?.1.strip_suffix(']')?;
            Some((name.into(), candidate.into(), arch.into(), installed.into()))
        })
        .collect()
}

/// The median time of `runs` runs of `apt list --upgradable` (output discarded); `None`
/// when apt cannot run or fails.
pub fn time_upgradable(runs: usize) -> Option<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let status = Command::new("apt")
            .args(["list", "--upgradable"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        samples.push(start.elapsed());
        status.success().then_some(())?;
    }
    Some(median(samples))
}

/// The median of some durations (zero for none).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_lines_are_read_and_others_skipped() {
        let text =
            "Listing...\nbash/stable-security 5.2.15-2+b8 amd64 [upgradable from: 5.2.15-2+b7]\n";
        let listed = parse_upgradable(text);
        assert_eq!(listed.len(), 1);
        let first = listed.iter().next().map(|l| l.0.as_str());
        assert_eq!(first, Some("bash"));
    }
}
