//! Resource quantities (`500m`, `1Gi`, `1e3`), parsed exactly.
//!
//! k8s-openapi keeps a `Quantity` as an opaque string, so the apiserver-side checks (parses,
//! non-negative, integral, requests ≤ limits) need a parser. Values are kept as an exact
//! decimal `mantissa × 10^exp10 × 2^exp2` so `0.1` and `100m` compare equal, as upstream's
//! `inf.Dec`-based comparison does; no extra crate is needed for that.

use std::cmp::Ordering;

/// The error upstream reports when a quantity does not parse.
pub(crate) const QUANTITY_FORMAT_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// An exactly-represented quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    negative: bool,
    /// The digits, without the decimal point.
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses the canonical quantity grammar: sign, digits with an optional fraction, and a
    /// binary (`Ki`…`Ei`), decimal SI (`n`…`E`) or exponent (`e3`) suffix.
    pub(crate) fn parse(s: &str) -> Option<Quantity> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (mantissa, frac_digits) = parse_decimal(number)?;
        let (exp10, exp2) = parse_suffix(suffix)?;
        Some(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10: exp10.checked_sub(frac_digits)?,
            exp2,
        })
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.negative
    }

    /// Whether the value is a whole number (upstream: `MilliValue() % 1000 == 0`).
    pub(crate) fn is_integer(&self) -> bool {
        if self.exp10 >= 0 || self.mantissa == 0 {
            return true;
        }
        let div = 10u128.checked_pow(self.exp10.unsigned_abs());
        match div {
            // 2^exp2 has no factor of 5, so only the 5s of the divisor must divide the mantissa;
            // the 2s can be supplied by 2^exp2.
            Some(d) => {
                let twos = d.trailing_zeros().min(self.exp2);
                self.mantissa.is_multiple_of(d >> twos)
            }
            None => false,
        }
    }

    /// Exact comparison, falling back to floating point only for absurd magnitudes.
    pub(crate) fn cmp_value(&self, other: &Quantity) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let magnitude = self
            .exact_cmp(other)
            .unwrap_or_else(|| self.approx().total_cmp(&other.approx()));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }

    /// Compares magnitudes by scaling both to the same power of ten.
    fn exact_cmp(&self, other: &Quantity) -> Option<Ordering> {
        let a = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let b = other.mantissa.checked_mul(1u128.checked_shl(other.exp2)?)?;
        let shift = self.exp10 - other.exp10;
        let (a, b) = if shift >= 0 {
            (a.checked_mul(10u128.checked_pow(shift.unsigned_abs())?)?, b)
        } else {
            (a, b.checked_mul(10u128.checked_pow(shift.unsigned_abs())?)?)
        };
        Some(a.cmp(&b))
    }

    pub(crate) fn approx(&self) -> f64 {
        (self.mantissa as f64) * 10f64.powi(self.exp10) * 2f64.powi(self.exp2 as i32)
    }
}

/// Digits with an optional single '.', returning the digits as an integer and how many were
/// after the point.
fn parse_decimal(number: &str) -> Option<(u128, i32)> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let trimmed = digits.trim_start_matches('0');
    let mantissa = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse::<u128>().ok()?
    };
    Some((mantissa, i32::try_from(frac_part.len()).ok()?))
}

/// The suffix as (power of ten, power of two).
fn parse_suffix(suffix: &str) -> Option<(i32, u32)> {
    let si = match suffix {
        "" => Some((0, 0)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => None,
    };
    si.or_else(|| parse_exponent(suffix).map(|e| (e, 0)))
}

/// `e3`, `E-2`, `e+5`.
fn parse_exponent(suffix: &str) -> Option<i32> {
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    let digits = rest.trim_start_matches(['+', '-']);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || rest.len() - digits.len() > 1
    {
        return None;
    }
    rest.parse::<i32>().ok()
}

/// A quantity from a wire value, which may be a JSON string or number.
pub(crate) fn from_value(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// The text of a quantity as given on the wire (upstream prints its canonical form; this keeps
/// the user's spelling).
pub(crate) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        for ok in [
            "1", "0", "100m", "0.5", "1.5Gi", "1e3", "2E-2", "+3k", "-1", "500Mi", ".5",
        ] {
            assert!(Quantity::parse(ok).is_some(), "{ok} should parse");
        }
        for bad in ["", "abc", "1.2.3", "1X", "1Kii", "m", "1e", "1e+-3", "--1"] {
            assert!(Quantity::parse(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn compares_exactly() {
        let q = |s| Quantity::parse(s).expect("valid quantity");
        let cases = [
            ("100m", "0.1", Ordering::Equal),
            ("1Gi", "1073741824", Ordering::Equal),
            ("1G", "1Gi", Ordering::Less),
            ("2", "1500m", Ordering::Greater),
            ("-1", "0", Ordering::Less),
            ("1e3", "1k", Ordering::Equal),
            ("0", "-0", Ordering::Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(q(a).cmp_value(&q(b)), want, "{a} vs {b}");
        }
    }

    #[test]
    fn integer_check() {
        let q = |s| Quantity::parse(s).expect("valid quantity");
        assert!(q("2").is_integer());
        assert!(q("1000m").is_integer());
        assert!(q("1.5Ki").is_integer());
        assert!(!q("500m").is_integer());
        assert!(!q("0.5").is_integer());
        assert!(q("-1").is_negative());
    }
}
