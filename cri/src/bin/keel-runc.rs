//! keel-runc: a runc-compatible OCI runtime on youki's libcontainer (see `keel_cri::runc`).
//!
//! Thin: parses runc's command line into `keel_cri::runc::{Global, Command}` and runs it. Every
//! error is logged by the library's logger (the `--log` file as JSON or text, and stderr) and
//! exits 1; `exec` exits with the status of the process it ran.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use keel_cri::runc::{self, Command, Global, LogFormat};

#[derive(Parser, Debug)]
#[command(name = "keel-runc", version, about = "runc-compatible OCI runtime")]
struct Cli {
    /// Directory for container state.
    #[arg(long, default_value = runc::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// Log libcontainer's debug events.
    #[arg(long)]
    debug: bool,
    /// runc's log level (only `debug` changes anything).
    #[arg(long)]
    log_level: Option<String>,
    /// cgroupsPath is `slice:prefix:name` and systemd manages the cgroup.
    #[arg(long)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container; its init waits for `start`.
    Create {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        no_pivot: bool,
        /// Accepted for runc compatibility; keyrings are left alone.
        #[arg(long)]
        no_new_keyring: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Send a signal to a container's init (or with --all to all its processes).
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container's state and cgroup.
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec {
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// Accepted for runc compatibility; a terminal needs --console-socket.
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// List containers.
    List {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let global = Global {
        root: cli.root,
        log: cli.log,
        log_format: match cli.log_format {
            Format::Text => LogFormat::Text,
            Format::Json => LogFormat::Json,
        },
        systemd_cgroup: cli.systemd_cgroup,
        debug: cli.debug || cli.log_level.as_deref() == Some("debug"),
    };
    if let Err(e) = runc::log::init(global.log.as_deref(), global.log_format, global.debug) {
        eprintln!("keel-runc: {e}");
        std::process::exit(1);
    }
    let command = match cli.command {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            no_new_keyring: _,
            preserve_fds,
            id,
        } => Command::Create(runc::create::Options {
            id,
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            preserve_fds,
        }),
        Cmd::Start { id } => Command::Start { id },
        Cmd::Kill { all, id, signal } => Command::Kill(runc::kill::Options { id, signal, all }),
        Cmd::Delete { force, id } => Command::Delete(runc::delete::Options { id, force }),
        Cmd::Exec {
            process,
            pid_file,
            console_socket,
            detach,
            cwd,
            env,
            tty: _,
            preserve_fds,
            id,
            args,
        } => Command::Exec(runc::exec::Options {
            id,
            process,
            args,
            cwd,
            env,
            pid_file,
            console_socket,
            detach,
            preserve_fds,
        }),
        Cmd::State { id } => Command::State { id },
        Cmd::List { format, quiet } => Command::List {
            json: format == "json",
            quiet,
        },
    };
    match runc::run(&global, command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            runc::log::error(&runc::error_chain(&e));
            std::process::exit(1);
        }
    }
}
