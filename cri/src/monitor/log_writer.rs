//! The CRI container log format: turns a stream's bytes into
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n` lines.
//!
//! Owns line splitting and formatting only; the caller owns the file. A line longer than
//! [`MAX_LINE`] is cut into `P` (partial) records followed by a final `F` record, as the kubelet
//! expects; bytes left without a newline when the stream ends become one `F` record.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest text carried by one log record before it is split with `P`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Accumulates one stream's bytes and emits complete CRI log records.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds bytes read from the stream; appends finished records to `out`.
    pub fn feed(&mut self, mut data: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.flush_long(now, out);
                    record(self.stream, b'F', &self.pending, now, out);
                    self.pending.clear();
                }
                None => {
                    self.pending.extend_from_slice(data);
                    data = &[];
                    self.flush_long(now, out);
                }
            }
        }
    }

    /// The stream ended: whatever is pending becomes a final record.
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            record(self.stream, b'F', &self.pending, now, out);
            self.pending.clear();
        }
    }

    /// Emits `P` records while more than MAX_LINE bytes wait for a newline.
    fn flush_long(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        while self.pending.len() > MAX_LINE {
            record(self.stream, b'P', &self.pending[..MAX_LINE], now, out);
            self.pending.drain(..MAX_LINE);
        }
    }
}

fn record(stream: Stream, tag: u8, text: &[u8], now: SystemTime, out: &mut Vec<u8>) {
    let _ = write!(out, "{} {} ", rfc3339_nano(now), stream.name());
    out.push(tag);
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Formats a time as RFC 3339 in UTC with nanoseconds: `2026-11-22T11:16:31.123456789Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nano(at(1_795_346_191, 5)),
            "2026-11-22T11:16:31.000000005Z"
        );
        assert_eq!(
            rfc3339_nano(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn splits_lines_and_partials() {
        let now = at(0, 0);
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        s.feed(b"hello\nwor", now, &mut out);
        s.feed(b"ld\n\nend", now, &mut out);
        s.finish(now, &mut out);
        let ts = "1970-01-01T00:00:00.000000000Z";
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!(
                "{ts} stdout F hello\n{ts} stdout F world\n{ts} stdout F \n{ts} stdout F end\n"
            )
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let now = at(0, 0);
        let mut s = LineSplitter::new(Stream::Stderr);
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        s.feed(&long, now, &mut out);
        s.feed(b"\n", now, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        let tags: Vec<&str> = text
            .lines()
            .map(|l| l.split(' ').nth(2).unwrap_or(""))
            .collect();
        assert_eq!(tags, ["P", "P", "F"]);
        let total: usize = text
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").len())
            .sum();
        assert_eq!(total, MAX_LINE * 2 + 10);
    }
}
