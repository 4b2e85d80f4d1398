//! The `provision` binary: parse, run, exit. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(provision::run(std::env::args_os()).code())
}
