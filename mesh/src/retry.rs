//! The back-off every retry loop of Jifen waits by: a first delay that doubles with each
//! attempt in a row, up to a ceiling.

use std::time::Duration;

/// The wait before retrying after `attempt` failures in a row (1 for the first): `first`,
/// doubling, never more than `most`.
pub fn doubling(first: Duration, attempt: u32, most: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    first
        .checked_mul(1_u32 << doublings)
        .map_or(most, |delay| delay.min(most))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_ceiling() {
        let (first, most) = (Duration::from_millis(250), Duration::from_secs(5));
        assert_eq!(doubling(first, 0, most), first);
        assert_eq!(doubling(first, 1, most), first);
        assert_eq!(doubling(first, 2, most), Duration::from_millis(500));
        assert_eq!(doubling(first, 5, most), Duration::from_secs(4));
        assert_eq!(doubling(first, 6, most), most);
        assert_eq!(doubling(first, u32::MAX, most), most);
    }
}
