//! How the watches wait after an error: from 250 ms, doubling up to 2 s, reset once a watch
//! is healthy again. kube's default grows to 30 s, so after an API server outage a watch
//! could sleep half a minute past the server's return; with this one it is back within
//! about 2 s of the server answering. A few list calls every 2 s while the API server is
//! down is no load worth saving.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct QuickBackoff {
    next: Duration,
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff { next: FIRST }
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(LONGEST);
        // A little spread, so that the watches of one replica do not retry in step.
        let spread = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 100);
        Some(wait + Duration::from_millis(spread))
    }
}

impl Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_two_seconds_and_starts_over_on_reset() {
        let mut backoff = QuickBackoff::default();
        for base in [250, 500, 1000, 2000, 2000, 2000] {
            let wait = backoff.next().unwrap().as_millis();
            assert!((base..base + 100).contains(&wait), "{wait} ms, not {base}");
        }
        backoff.reset();
        assert!(backoff.next().unwrap() < Duration::from_millis(350));
    }
}
