//! runc-style logging: `--log FILE --log-format json|text`.
//!
//! Every line is one `write(2)` to a file opened with `O_APPEND`, so lines from the runtime and
//! from the container processes it clones (which share the descriptor until they exec) never
//! interleave. JSON lines look like runc's: `{"level":"error","msg":"...","time":"..."}`; the
//! monitor reads the last `error` line as the reason a `create` failed, so the final error of a
//! command is written last, by [`error`]. libcontainer's own `tracing` events go to the same
//! place through [`RuncLayer`]. Owns nothing else; it never writes to stdout.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug)]
struct Sink {
    /// `None`: log to stderr.
    file: Option<File>,
    format: LogFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Opens the log file and routes `tracing` events (libcontainer's) into it.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> Result<(), super::Error> {
    let file = match log {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| super::Error::Io {
                    what: "opening log",
                    path: path.to_path_buf(),
                    source,
                })?,
        ),
        None => None,
    };
    let _ = SINK.set(Sink { file, format });
    let max = if debug { Level::DEBUG } else { Level::WARN };
    let subscriber = tracing_subscriber::registry().with(RuncLayer { max });
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// Writes a command's final error to the log (and to stderr when the log is a file).
pub fn error(msg: &str) {
    write_line("error", msg);
    if SINK.get().is_some_and(|s| s.file.is_some()) {
        let _ = writeln!(std::io::stderr(), "keel-runc: {msg}");
    }
}

/// Writes a warning (e.g. a cleanup that failed after the real error).
pub fn warn(msg: &str) {
    write_line("warning", msg);
}

/// Renders one log line (without the newline) in runc's shape.
pub fn render(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
    }
}

fn write_line(level: &str, msg: &str) {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (format, file) = match SINK.get() {
        Some(s) => (s.format, s.file.as_ref()),
        None => (LogFormat::Text, None),
    };
    let mut line = render(format, level, msg, &time);
    line.push('\n');
    match file {
        Some(mut f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Forwards `tracing` events at or above `max` verbosity to the log.
struct RuncLayer {
    max: Level,
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        // libcgroups warns about every v1 controller the kernel lacks, on every command.
        if self.max < Level::DEBUG && metadata.target().starts_with("libcgroups") {
            return *metadata.level() <= Level::ERROR;
        }
        *metadata.level() <= self.max
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut v = MessageVisitor::default();
        event.record(&mut v);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        // libcontainer's error events are details on the way to the final error; keep them out
        // of the "last error" the monitor reports by logging them one level down.
        let level = if level == "error" { "warning" } else { level };
        write_line(level, &v.finish());
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_runc_shaped() {
        let line = render(
            LogFormat::Json,
            "error",
            "boom \"x\"",
            "2025-01-01T00:00:00Z",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn text_line() {
        assert_eq!(
            render(LogFormat::Text, "warning", "a b", "T"),
            "time=\"T\" level=warning msg=\"a b\""
        );
    }
}
