//! Kubernetes quantities (`500m`, `2`, `1.5Gi`, `1e3`) as whole thousandths of a unit, for adding, comparing and
//! splitting quotas. Kept here rather than taken from a crate: the one that parses `k8s-openapi`'s Quantity
//! (kube_quantity) truncates fractions and refuses sub-unit scales when converting to integers.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `quantity` in thousandths of its unit, rounded up (a usage is never under-counted); `None` if it does not parse.
#[must_use]
pub fn milli(quantity: &Quantity) -> Option<i128> {
    let text = quantity.0.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    // value = digits / 10^places * numerator / denominator
    let places = u32::try_from(fraction.len()).ok()?;
    let (numerator, denominator): (i128, i128) = match suffix {
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "" => (1, 1),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        exponent => {
            let power: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            let scale = 10_i128.checked_pow(power.unsigned_abs())?;
            if power >= 0 {
                (scale, 1)
            } else {
                (1, scale)
            }
        }
    };
    let top = digits.checked_mul(numerator)?.checked_mul(1000)?;
    let bottom = denominator.checked_mul(10_i128.checked_pow(places)?)?;
    let value = (top + bottom - 1) / bottom;
    Some(if negative { -value } else { value })
}

/// Thousandths back to a quantity: whole units when it has none over, else `m`.
#[must_use]
pub fn from_milli(milli: i128) -> Quantity {
    Quantity(if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    })
}

/// Thousandths of resource `key` back to a quantity as people write it: bytes (memory, storage) in the largest binary
/// unit that divides them (`8Gi`, not `8589934592`), anything else as [`from_milli`] does.
#[must_use]
pub fn quantity_of(key: &str, milli: i128) -> Quantity {
    if (key.contains("memory") || key.contains("storage")) && milli % 1000 == 0 && milli > 0 {
        let bytes = milli / 1000;
        for (power, suffix) in [(60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
            let unit = 1_i128 << power;
            if bytes % unit == 0 {
                return Quantity(format!("{}{suffix}", bytes / unit));
            }
        }
    }
    from_milli(milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Option<i128> {
        milli(&Quantity(text.to_owned()))
    }

    #[test]
    fn parses_every_suffix_into_thousandths() {
        assert_eq!(m("4"), Some(4_000));
        assert_eq!(m("500m"), Some(500));
        assert_eq!(m("2.5"), Some(2_500));
        assert_eq!(m("1Ki"), Some(1_024_000));
        assert_eq!(m("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(m("2k"), Some(2_000_000));
        assert_eq!(m("1e3"), Some(1_000_000));
        assert_eq!(m("1E-3"), Some(1));
        assert_eq!(m("1n"), Some(1), "sub-thousandths round up");
        assert_eq!(m("-1"), Some(-1_000));
        assert_eq!(m(""), None);
        assert_eq!(m("1Qi"), None);
        assert_eq!(m("abc"), None);
    }

    #[test]
    fn formats_whole_units_plainly_and_the_rest_in_m() {
        assert_eq!(from_milli(4_000).0, "4");
        assert_eq!(from_milli(1_500).0, "1500m");
        assert_eq!(from_milli(0).0, "0");
    }

    #[test]
    fn formats_bytes_in_the_largest_binary_unit_that_divides_them() {
        assert_eq!(quantity_of("limits.memory", 8 * (1 << 30) * 1000).0, "8Gi");
        assert_eq!(quantity_of("requests.storage", 1536 * (1 << 20) * 1000).0, "1536Mi");
        assert_eq!(quantity_of("requests.memory", 1000 * 1000).0, "1000");
        assert_eq!(quantity_of("requests.memory", 0).0, "0");
        assert_eq!(quantity_of("pods", 1024 * 1000).0, "1024");
        assert_eq!(quantity_of("requests.cpu", 1500).0, "1500m");
    }
}
