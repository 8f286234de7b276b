//! Generates the man pages and the shell completions from the command line's own definition
//! (`src/cli/args.rs`, included here as it is), so they cannot drift from `--help`. They are
//! written to `target/<profile>/assets/`, where the Debian package (`cargo deb`) takes them from:
//! OUT_DIR's name holds a hash that a package manifest cannot know.

// The definition's fields are read by the binary, not here; it brings `PathBuf` with it.
#![allow(dead_code)]

use clap::CommandFactory;
use clap_complete::Shell;

include!("src/cli/args.rs");

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/cli/args.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    // OUT_DIR is target/<profile>/build/<package>-<hash>/out.
    let out = out_dir.ancestors().nth(3).expect("OUT_DIR lies under the target directory").join("assets");
    // Anew each time, so a page for a verb that is gone is not packaged.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut command = Cli::command();
    // mcp-token-sync.1, and a page per verb (mcp-token-sync-run.1, …) that it lists; gzipped as
    // Debian policy wants them (cargo-deb compresses only pages it did not see built).
    let pages = out_dir.join("man");
    std::fs::create_dir_all(&pages)?;
    clap_mangen::generate_to(command.clone(), &pages)?;
    for page in std::fs::read_dir(&pages)? {
        let page = page?.path();
        let name = page.file_name().expect("a page has a name").to_string_lossy().into_owned();
        // As `gzip -9n`: no name or time in the header, so builds are reproducible.
        let mut gz = flate2::GzBuilder::new()
            .write(std::fs::File::create(out.join(format!("{name}.gz")))?, flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &std::fs::read(&page)?)?;
        gz.finish()?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "mcp-token-sync", &out)?;
    }
    Ok(())
}
