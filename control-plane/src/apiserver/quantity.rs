//! Kubernetes resource quantities (`100m`, `1Gi`, `1e3`, `500Mi`): parsing, comparison and the
//! integer views (millis, rounded-up value) that validation and the scheduler need.

use std::fmt;

/// Nanounits per unit: a quantity is held exactly as an integer count of 10^-9.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// What kube-apiserver answers when a quantity does not parse.
pub const QUANTITY_SYNTAX: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Binary suffixes and their power of two.
const BINARY_SUFFIXES: &[(&str, u32)] = &[
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

/// Decimal SI suffixes and their power of ten.
const DECIMAL_SUFFIXES: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// A parsed quantity, exact to the nanounit (finer fractions round up, as kube does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// A string that is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{QUANTITY_SYNTAX}")]
pub struct QuantityError;

impl Quantity {
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// The quantity in thousandths, rounded up: `100m` → 100, `1` → 1000.
    pub fn millis(&self) -> i64 {
        saturate(div_ceil(self.nanos, 1_000_000))
    }

    /// The quantity as a whole number, rounded up: `1Gi` → 1073741824 (bytes), `100m` → 1.
    pub fn value(&self) -> i64 {
        saturate(div_ceil(self.nanos, NANOS_PER_UNIT))
    }

    /// Bytes, for memory and storage quantities (same as `value`).
    pub fn bytes(&self) -> i64 {
        self.value()
    }

    /// The exact count of nanounits.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }
}

fn div_ceil(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 { q + 1 } else { q }
}

fn saturate(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// Renders in a canonical form: whole numbers plainly, fractions in `m` or `n`.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANOS_PER_UNIT == 0 {
            write!(f, "{}", self.nanos / NANOS_PER_UNIT)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

/// Parses a Kubernetes quantity: a signed decimal number then a binary suffix (`Ki`..`Ei`), a
/// decimal SI suffix (`n`, `u`, `m`, `k`, `M`..`E`) or an exponent (`e3`, `E-2`).
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    let (number, suffix) = split_number(s)?;
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (mantissa, scale) = parse_decimal(digits)?;
    let magnitude = apply_suffix(mantissa, scale, suffix)?;
    Ok(Quantity {
        nanos: if negative { -magnitude } else { magnitude },
    })
}

/// Splits at the first character that cannot belong to the number part.
fn split_number(s: &str) -> Result<(&str, &str), QuantityError> {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let number = &s[..end];
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return Err(QuantityError);
    }
    Ok((number, &s[end..]))
}

/// Digits with at most one '.', as an integer mantissa and a count of fraction digits.
fn parse_decimal(digits: &str) -> Result<(i128, u32), QuantityError> {
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if fraction.contains('.') || whole.len() + fraction.len() > 30 {
        return Err(QuantityError);
    }
    let mut mantissa: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    Ok((mantissa, fraction.len() as u32))
}

/// mantissa × 10^-scale × suffix, in nanounits, rounded up.
fn apply_suffix(mantissa: i128, scale: u32, suffix: &str) -> Result<i128, QuantityError> {
    if let Some(&(_, power)) = BINARY_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        let numerator = mantissa
            .checked_mul(1i128 << power)
            .and_then(|n| n.checked_mul(NANOS_PER_UNIT))
            .ok_or(QuantityError)?;
        return Ok(div_ceil(numerator, 10i128.pow(scale)));
    }
    let exponent = decimal_exponent(suffix)?;
    scale_by_power_of_ten(mantissa, exponent + 9 - scale as i32)
}

fn decimal_exponent(suffix: &str) -> Result<i32, QuantityError> {
    if let Some(&(_, power)) = DECIMAL_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        return Ok(power);
    }
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
        .ok_or(QuantityError)?;
    let unsigned = rest
        .strip_prefix('+')
        .or_else(|| rest.strip_prefix('-'))
        .unwrap_or(rest);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError);
    }
    let exponent: i32 = rest.parse().map_err(|_| QuantityError)?;
    if exponent.abs() > 30 {
        return Err(QuantityError);
    }
    Ok(exponent)
}

fn scale_by_power_of_ten(mantissa: i128, power: i32) -> Result<i128, QuantityError> {
    if power >= 0 {
        mantissa
            .checked_mul(10i128.checked_pow(power as u32).ok_or(QuantityError)?)
            .ok_or(QuantityError)
    } else {
        let divisor = 10i128
            .checked_pow(power.unsigned_abs())
            .ok_or(QuantityError)?;
        Ok(div_ceil(mantissa, divisor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse_quantity(s).expect(s)
    }

    #[test]
    fn parses_the_usual_forms() {
        let cases: &[(&str, i64, i64)] = &[
            ("100m", 100, 1),
            ("1", 1000, 1),
            ("2", 2000, 2),
            ("0.5", 500, 1),
            (".5", 500, 1),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("1Ki", 1_024_000, 1024),
            ("500Mi", 524_288_000_000, 524_288_000),
            ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1k", 1_000_000, 1000),
            ("1M", 1_000_000_000, 1_000_000),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("250u", 1, 1),
            ("1n", 1, 1),
            ("0", 0, 0),
            ("+3", 3000, 3),
        ];
        for &(text, millis, value) in cases {
            assert_eq!(q(text).millis(), millis, "{text} millis");
            assert_eq!(q(text).value(), value, "{text} value");
        }
    }

    #[test]
    fn negative_and_ordering() {
        assert!(q("-1").is_negative());
        assert!(q("100m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1e-3"), q("1m"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1x", "1.2.3", "m", "1Gib", "1e", "--1", "1 Gi", "1e99",
        ] {
            assert_eq!(parse_quantity(bad), Err(QuantityError), "{bad}");
        }
        assert_eq!(QuantityError.to_string(), QUANTITY_SYNTAX);
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(q("1").to_string(), "1");
        assert_eq!(q("100m").to_string(), "100m");
        assert_eq!(q("1Ki").to_string(), "1024");
    }
}
