//! The repository stands on its own: no tracked file refers to a path outside it, so a clone
//! into an empty folder builds, tests and reads the same as this one.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The repository's root (this crate lives one folder below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the repository")
        .to_owned()
}

fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git runs (the test command works on a git clone)");
    assert!(out.status.success(), "git ls-files failed");
    out.stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .collect()
}

/// `base` joined with the relative `path`, `..` resolved lexically; `None` when it climbs
/// above `base`'s root (the repository's top).
fn resolve(base: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<Component> = base.components().collect();
    for part in Path::new(path).components() {
        match part {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// Relative paths that climb with `../` in a text: the candidates for pointing outside.
fn climbing_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("../") {
        let start = i + at;
        // Only where a path starts (`.../x` is an ellipsis, `a../` no path).
        let begins = start == 0
            || !(matches!(bytes[start - 1], b'.' | b'_' | b'-')
                || bytes[start - 1].is_ascii_alphanumeric());
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "./_-".contains(c)))
            .map_or(text.len(), |n| start + n);
        if begins {
            found.push(text[start..end].trim_end_matches('.').to_owned());
        }
        i = end.max(start + 3);
    }
    found
}

/// Every crate's manifest folder, so paths written relative to a crate (Rust's
/// `CARGO_MANIFEST_DIR`) resolve as the compiler would.
fn crate_dir_of(root: &Path, file: &Path) -> PathBuf {
    let mut dir = file.parent().map(Path::to_owned).unwrap_or_default();
    loop {
        if root.join(&dir).join("Cargo.toml").exists() || dir.as_os_str().is_empty() {
            return dir;
        }
        dir = dir.parent().map(Path::to_owned).unwrap_or_default();
    }
}

#[test]
fn no_tracked_file_refers_to_a_path_outside_the_repository() {
    let root = root();
    let mut outside = Vec::new();
    for file in tracked_files(&root) {
        // Lock files name registry sources, not paths of ours.
        if file.file_name().is_some_and(|n| n == "Cargo.lock") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            continue; // not text
        };
        let here = file.parent().map(Path::to_owned).unwrap_or_default();
        let crate_dir = crate_dir_of(&root, &file);
        for path in climbing_paths(&text) {
            // Written relative to the file or to its crate, it must land on something that is
            // in the repository.
            // `target/` is the build's own output, made by the build.
            let lands_inside = [&here, &crate_dir]
                .into_iter()
                .filter_map(|base| resolve(base, &path))
                .any(|target| target.starts_with("target") || root.join(target).exists());
            if !lands_inside {
                outside.push(format!("{}: {path}", file.display()));
            }
        }
        for absolute in [
            concat!("/wo", "rk/"),
            concat!("/ro", "ot/"),
            concat!("/ho", "me/"),
        ] {
            if text.contains(absolute) {
                outside.push(format!(
                    "{}: an absolute path under {absolute}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "tracked files refer to paths outside the repository:\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_path_check_sees_what_it_should() {
    // Built from pieces, so this file does not trip the check itself.
    let up = "..";
    let text = format!("see [the kit]({up}/shared/DESIGN.md), and {up}/{up}/fixtures/x.json.");
    assert_eq!(
        climbing_paths(&text),
        vec![
            format!("{up}/shared/DESIGN.md"),
            format!("{up}/{up}/fixtures/x.json")
        ]
    );
    assert_eq!(resolve(Path::new("docs"), &format!("{up}/{up}/x")), None);
    assert_eq!(
        resolve(Path::new("shared/src"), &format!("{up}/fixtures")),
        Some(PathBuf::from("shared/fixtures"))
    );
}

/// The crates a package's release build links, as `cargo tree -e normal` lists them.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_core_crate_does_no_io() {
    let crates = normal_dependencies("calsync-core");
    assert!(crates.contains("jiff"), "{crates:?}");
    let io: Vec<&String> = crates
        .iter()
        .filter(|name| {
            ["tokio", "reqwest", "hyper", "rusqlite", "lambda"]
                .iter()
                .any(|banned| name.starts_with(banned))
                || name.starts_with("aws-")
                || name.starts_with("aws_")
        })
        .collect();
    assert!(io.is_empty(), "calsync-core depends on {io:?}");
}

#[test]
fn the_functions_carry_only_what_lambda_runs_with_one_crypto_provider() {
    for function in ["calsync-auth", "calsync-webhook", "calsync-sync"] {
        let crates = normal_dependencies(function);
        assert!(crates.contains("ring"), "{function}: {crates:?}");
        for absent in [
            "rusqlite",
            "libsqlite3-sys",
            "aws-lc-rs",
            "aws-lc-sys",
            "calsync-sandbox",
            "aws-sdk-sso",
            "aws-sdk-ssooidc",
            "openssl",
        ] {
            assert!(!crates.contains(absent), "{function} links {absent}");
        }
    }
}
