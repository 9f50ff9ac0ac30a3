//! The `modelopt` command.

fn main() {
    eprintln!("modelopt: no subcommands yet");
    std::process::exit(2);
}
