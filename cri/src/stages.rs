//! Stage timings of one multi-step operation (RunPodSandbox, CreateContainer), reported in the
//! operation's log line so that an operator sees where the time went. Owns nothing else.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// Marks the end of each stage; `summary` renders `total=12.3ms a=1.0ms b=11.3ms`.
#[derive(Debug)]
pub struct Stages {
    start: Instant,
    last: Instant,
    parts: Vec<(&'static str, Duration)>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages::new()
    }
}

impl Stages {
    pub fn new() -> Stages {
        let now = Instant::now();
        Stages {
            start: now,
            last: now,
            parts: Vec::new(),
        }
    }

    /// The stage `name` ends now.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.parts.push((name, now - self.last));
        self.last = now;
    }

    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut s = format!("total={:.1}ms", ms(self.last - self.start));
        for (name, d) in &self.parts {
            let _ = write!(s, " {name}={:.1}ms", ms(*d));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Stages;

    #[test]
    fn summary_names_every_stage() {
        let mut s = Stages::new();
        s.mark("a");
        s.mark("b");
        let text = s.summary();
        assert!(text.starts_with("total="), "{text}");
        assert!(text.contains(" a=") && text.contains(" b="), "{text}");
    }
}
