//! Points as a partner's currency amount (`[amount]`): `points_per_unit` points make one unit,
//! written with `decimals` decimals ("12.50" yuan, or fen with no decimals). Exact both ways —
//! no floating point near money: a conversion that would round is refused.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    pub points_per_unit: i64,
    #[serde(default)]
    pub decimals: u32,
}

impl Amount {
    /// Whether every whole number of points is an exact amount with these decimals.
    pub fn check(&self) -> Result<(), String> {
        if self.decimals > 6 {
            return Err(format!("decimals is {}; at most 6", self.decimals));
        }
        if self.points_per_unit < 1 {
            return Err("points_per_unit must be 1 or more".into());
        }
        if 10i64.pow(self.decimals) % self.points_per_unit != 0 {
            return Err(format!(
                "{} points per unit cannot be written exactly with {} decimals (a point \
                 would be rounded): use more decimals",
                self.points_per_unit, self.decimals
            ));
        }
        Ok(())
    }

    /// `points` as an amount: `1250` → `"12.50"` with 100 points per unit and 2 decimals.
    pub fn to_text(&self, points: i64) -> String {
        let scale = 10i64.pow(self.decimals);
        // Exact by `check`: scale is a multiple of points_per_unit.
        let minor = i128::from(points) * i128::from(scale / self.points_per_unit);
        let scale = i128::from(scale);
        let sign = if minor < 0 { "-" } else { "" };
        let minor = minor.abs();
        if self.decimals == 0 {
            return format!("{sign}{minor}");
        }
        format!(
            "{sign}{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = self.decimals as usize
        )
    }

    /// The points an amount stands for; `None` when it is not a number or not a whole number
    /// of points.
    pub fn points_of(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 18
        {
            return None;
        }
        let fraction = fraction.trim_end_matches('0');
        let scale = 10i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let fraction: i128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        let minor = whole.checked_mul(scale)?.checked_add(fraction)?;
        let points = minor.checked_mul(i128::from(self.points_per_unit))?;
        if points % scale != 0 {
            return None;
        }
        let points = i64::try_from(points / scale).ok()?;
        Some(if negative { -points } else { points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_amounts_convert_exactly_both_ways() {
        let yuan = Amount {
            points_per_unit: 100,
            decimals: 2,
        };
        yuan.check().unwrap();
        assert_eq!(yuan.to_text(1250), "12.50");
        assert_eq!(yuan.to_text(5), "0.05");
        assert_eq!(yuan.points_of("12.50"), Some(1250));
        assert_eq!(yuan.points_of("12.5"), Some(1250));
        assert_eq!(yuan.points_of("12"), Some(1200));
        assert_eq!(yuan.points_of("0.055"), None, "half a point");
        assert_eq!(yuan.points_of("1e3"), None);
        assert_eq!(yuan.points_of(""), None);
        let fen = Amount {
            points_per_unit: 1,
            decimals: 0,
        };
        assert_eq!(fen.to_text(1250), "1250");
        assert_eq!(fen.points_of("1250.00"), Some(1250));
        let ten = Amount {
            points_per_unit: 10,
            decimals: 1,
        };
        assert_eq!(ten.to_text(25), "2.5");
        assert_eq!(ten.points_of("2.5"), Some(25));
    }

    #[test]
    fn a_unit_that_would_round_points_is_refused() {
        assert!(
            Amount {
                points_per_unit: 3,
                decimals: 2
            }
            .check()
            .is_err()
        );
        assert!(
            Amount {
                points_per_unit: 100,
                decimals: 1
            }
            .check()
            .is_err()
        );
        assert!(
            Amount {
                points_per_unit: 0,
                decimals: 0
            }
            .check()
            .is_err()
        );
    }
}
