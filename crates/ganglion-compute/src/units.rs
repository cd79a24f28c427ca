//! Parsing sizes (`1GiB`, `512MiB`, `10G`) and timelines (`7d`, `12h`, `90s`) for the CLI
//! and config files.

/// Bytes from `1024`, `64MiB`, `1GiB`, `10G` (binary), `10GB` (decimal), `2TiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size like 1GiB, 512MiB or 10G"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "ki" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mi" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "tb" => 1e12,
        other => return Err(format!("unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB, TiB, or KB, MB, GB, TB)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || !(1.0..=1e15).contains(&bytes) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Seconds from `7d`, `12h`, `30m`, `90s` or a bare number of days (the original's unit).
pub fn parse_timeline(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.char_indices().last() {
        Some((i, 'd')) => (&trimmed[..i], 86_400.0),
        Some((i, 'h')) => (&trimmed[..i], 3_600.0),
        Some((i, 'm')) => (&trimmed[..i], 60.0),
        Some((i, 's')) => (&trimmed[..i], 1.0),
        _ => (trimmed, 86_400.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a timeline like 7d, 12h, 30m or 90s"))?;
    let seconds = value * scale;
    if !seconds.is_finite() || seconds < 1.0 {
        return Err(format!("`{text}` is too short"));
    }
    if seconds > crate::protocol::MAX_TIMELINE_SECONDS as f64 {
        return Err(format!("`{text}` is longer than the 60-day maximum"));
    }
    Ok(seconds.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_timelines() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("1XB").is_err() && parse_size("GiB").is_err() && parse_size("0").is_err());
        assert_eq!(parse_timeline("7d"), Ok(7 * 86_400));
        assert_eq!(parse_timeline("12h"), Ok(43_200));
        assert_eq!(parse_timeline("90s"), Ok(90));
        assert_eq!(parse_timeline("2"), Ok(2 * 86_400), "bare numbers are days, as in the original");
        assert!(parse_timeline("61d").is_err() && parse_timeline("0s").is_err() && parse_timeline("soon").is_err());
    }
}
