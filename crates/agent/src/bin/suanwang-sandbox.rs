//! The sandbox helper alone (`suanwang-sandbox __sandbox-exec ROOT WORK UID GID MODE NET -- CMD…`):
//! what `suanwang` does when called with that first argument, as its own small executable for the
//! agent crate's tests, which have no `suanwang` binary to point their sandboxes at.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.split_first() {
        Some((first, rest)) if first == suanwang_agent::sandbox::HELPER_ARG => {
            eprintln!("{}", suanwang_agent::sandbox::helper_main(rest));
            std::process::exit(127);
        }
        _ => {
            eprintln!(
                "usage: suanwang-sandbox {} ROOT WORK UID GID root|user net|nonet -- COMMAND…",
                suanwang_agent::sandbox::HELPER_ARG
            );
            std::process::exit(2);
        }
    }
}
