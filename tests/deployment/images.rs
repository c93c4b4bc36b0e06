//! Both Dockerfiles build the binaries Cargo.toml names, on pinned Debian 13
//! images, and CI builds and runs them.

use super::*;

/// One Dockerfile instruction per entry, continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repository().join(dockerfile))
        .unwrap_or_else(|error| panic!("{dockerfile}: {error}"));
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|instruction| !instruction.trim().is_empty())
        .map(|instruction| {
            let trimmed = instruction.trim();
            let (keyword, arguments) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            (keyword.to_uppercase(), arguments.trim().to_owned())
        })
        .collect()
}

/// The defaults of the `ARG`s declared before the first `FROM`, which a
/// `FROM` may name as `${NAME}`.
fn argument_defaults(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .take_while(|(keyword, _)| keyword != "FROM")
        .filter(|(keyword, _)| keyword == "ARG")
        .filter_map(|(_, arguments)| arguments.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The `[[bin]]` names of Cargo.toml.
/// The lines of Cargo.toml under every `header` (a header may repeat, like
/// `[[bin]]`).
fn manifest_lines(header: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(repository().join("Cargo.toml")).expect("Cargo.toml");
    let mut lines = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside {
            lines.push(line.to_owned());
        }
    }
    lines
}

fn cargo_binaries() -> BTreeSet<String> {
    manifest_lines("[[bin]]")
        .iter()
        .filter_map(|line| {
            let value = line.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// The stages after the last FROM: what the image holds.
fn runtime_stage(instructions: &[(String, String)]) -> &[(String, String)] {
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    &instructions[last_from..]
}

#[test]
fn both_images_build_and_run_binaries_that_cargo_builds() {
    let binaries = cargo_binaries();
    assert!(
        binaries.contains("orders-service") && binaries.contains("migrate"),
        "{binaries:?}"
    );
    for (dockerfile, binary) in [
        ("Dockerfile", "orders-service"),
        ("migrations.dockerfile", "migrate"),
    ] {
        let instructions = instructions(dockerfile);
        let builds: Vec<&str> = instructions
            .iter()
            .filter(|(keyword, arguments)| keyword == "RUN" && arguments.contains("cargo build"))
            .flat_map(|(_, arguments)| {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                words
                    .windows(2)
                    .filter(|pair| pair[0] == "--bin")
                    .map(|pair| pair[1])
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            builds.contains(&binary),
            "{dockerfile} builds {binary}: {builds:?}"
        );
        for built in &builds {
            assert!(
                binaries.contains(*built),
                "{dockerfile} builds {built}, not a [[bin]] of Cargo.toml"
            );
        }
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "RUN"
                    && arguments.contains("cargo build --release --locked")),
            "{dockerfile}: a locked release build"
        );
        let runtime = runtime_stage(&instructions);
        let copied: Vec<&str> = runtime
            .iter()
            .filter(|(keyword, _)| keyword == "COPY")
            .map(|(_, arguments)| arguments.as_str())
            .collect();
        assert_eq!(
            copied,
            [format!(
                "--from=binaries /app/target/release/{binary} /usr/local/bin/{binary}"
            )],
            "{dockerfile}: the runtime image holds only {binary}"
        );
        // `binaries` is the builder unless CI hands in what it built once.
        assert_eq!(
            argument_defaults(&instructions)
                .get("BINARIES")
                .map(String::as_str),
            Some("builder"),
            "{dockerfile}: ARG BINARIES=builder"
        );
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "FROM"
                    && arguments == "${BINARIES} AS binaries"),
            "{dockerfile}: FROM ${{BINARIES}} AS binaries"
        );
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "COPY"
                    && arguments.contains(&format!("target/release/{binary} "))
                    && arguments.ends_with(" /app/target/release/")),
            "{dockerfile}: the prebuilt stage takes {binary} from target/release"
        );
        let entrypoint = runtime
            .iter()
            .find(|(keyword, _)| keyword == "ENTRYPOINT")
            .map(|(_, arguments)| arguments.as_str());
        assert_eq!(
            entrypoint,
            Some(format!("[\"/usr/local/bin/{binary}\"]").as_str()),
            "{dockerfile}"
        );
        let user = runtime
            .iter()
            .rfind(|(keyword, _)| keyword == "USER")
            .map(|(_, arguments)| arguments.split(':').next().unwrap_or_default().to_owned());
        let uid: u32 = user
            .unwrap_or_else(|| panic!("{dockerfile}: a USER"))
            .parse()
            .unwrap_or_else(|_| panic!("{dockerfile}: a numeric USER, for runAsNonRoot"));
        assert_ne!(uid, 0, "{dockerfile}");
        for (keyword, arguments) in &instructions {
            if keyword == "ENV" {
                let variable = arguments.split(['=', ' ']).next().unwrap_or_default();
                assert!(
                    VARIABLES.iter().any(|known| known.name == variable),
                    "{dockerfile} sets {variable}"
                );
            }
        }
    }
}

#[test]
fn the_server_image_exposes_the_default_port() {
    let server = instructions("Dockerfile");
    let exposed: Vec<&str> = runtime_stage(&server)
        .iter()
        .filter(|(keyword, _)| keyword == "EXPOSE")
        .map(|(_, arguments)| arguments.as_str())
        .collect();
    assert_eq!(exposed, [DEFAULT_PORT.to_string()]);
    let port = runtime_stage(&server)
        .iter()
        .find(|(keyword, arguments)| keyword == "ENV" && arguments.starts_with("PORT="))
        .map(|(_, arguments)| arguments.trim_start_matches("PORT=").to_owned());
    if let Some(port) = port {
        assert_eq!(port, DEFAULT_PORT.to_string(), "ENV PORT");
    }
    let migrations = instructions("migrations.dockerfile");
    assert!(
        runtime_stage(&migrations)
            .iter()
            .all(|(keyword, _)| keyword != "EXPOSE"),
        "migrate listens on no port"
    );
}

/// The folders `[patch.crates-io]` takes crates from.
fn patched_paths() -> Vec<String> {
    manifest_lines("[patch.crates-io]")
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.split_once("path = \"")?;
            Some(rest.split('"').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// cargo-chef's recipe names a patched crate by its path but does not carry
/// it: without the folder, `cargo chef cook` fails to load the manifest.
#[test]
fn patched_crates_reach_the_dependency_build_of_both_images() {
    let paths = patched_paths();
    let manifest = std::fs::read_to_string(repository().join("Cargo.toml")).expect("Cargo.toml");
    assert_eq!(
        paths.is_empty(),
        !manifest.contains("[patch.crates-io]"),
        "every [patch.crates-io] section names a path: {paths:?}"
    );
    for path in &paths {
        assert!(
            repository().join(path).join("Cargo.toml").is_file(),
            "{path}/Cargo.toml"
        );
    }
    let ignored =
        std::fs::read_to_string(repository().join(".dockerignore")).expect(".dockerignore");
    for dockerfile in ["Dockerfile", "migrations.dockerfile"] {
        let instructions = instructions(dockerfile);
        let cook = instructions
            .iter()
            .position(|(keyword, arguments)| {
                keyword == "RUN" && arguments.contains("cargo chef cook")
            })
            .unwrap_or_else(|| panic!("{dockerfile}: cargo chef cook"));
        let stage_start = instructions[..cook]
            .iter()
            .rposition(|(keyword, _)| keyword == "FROM")
            .expect("a FROM");
        for path in &paths {
            let top = path.split('/').next().unwrap_or_default();
            assert!(
                instructions[stage_start..cook]
                    .iter()
                    .any(|(keyword, arguments)| {
                        keyword == "COPY" && arguments.split_whitespace().next() == Some(top)
                    }),
                "{dockerfile}: copies {top} before cargo chef cook"
            );
            assert!(
                !ignored
                    .lines()
                    .map(|line| line.trim().trim_matches('/'))
                    .any(|line| line == top || line == format!("{top}/**")),
                ".dockerignore leaves out {top}"
            );
        }
    }
}

fn version_numbers(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| part.parse().expect("a numeric version"))
        .collect()
}

/// Builder and runtime on Debian 13, so the binary runs against the glibc it
/// was linked with, and a builder no older than the crate's rust-version.
#[test]
fn both_images_build_and_run_on_debian_13() {
    let rust_version = manifest_lines("[package]")
        .iter()
        .find_map(|line| {
            let value = line
                .strip_prefix("rust-version")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .expect("rust-version in Cargo.toml");
    for dockerfile in ["Dockerfile", "migrations.dockerfile"] {
        let instructions = instructions(dockerfile);
        let defaults = argument_defaults(&instructions);
        let images: Vec<String> = instructions
            .iter()
            .filter(|(keyword, _)| keyword == "FROM")
            .filter_map(|(_, arguments)| arguments.split_whitespace().next())
            .map(|image| {
                image
                    .strip_prefix("${")
                    .and_then(|name| name.strip_suffix('}'))
                    .map_or(image, |name| &defaults[name])
                    .to_owned()
            })
            .collect();
        // Pinned by digest, with the registry named: a tag can be moved, and
        // a name without a host depends on the client's default registry.
        for image in [&images[0], images.last().expect("a FROM")] {
            let (_, digest) = image
                .split_once("@sha256:")
                .unwrap_or_else(|| panic!("{dockerfile}: {image} is not pinned by digest"));
            assert!(
                digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
                "{dockerfile}: {image}"
            );
            assert!(
                image
                    .split('/')
                    .next()
                    .is_some_and(|host| host.contains('.')),
                "{dockerfile}: {image} names no registry"
            );
        }
        let builder = images[0]
            .strip_prefix("docker.io/library/rust:")
            .and_then(|tag| tag.split_once("-slim-trixie@"))
            .map(|(version, _)| version)
            .unwrap_or_else(|| panic!("{dockerfile}: builder {}", images[0]));
        assert_eq!(
            builder.split('.').count(),
            3,
            "{dockerfile}: a full rust version, not a moving tag"
        );
        assert!(
            version_numbers(builder) >= version_numbers(&rust_version),
            "{dockerfile}: rust {builder} < rust-version {rust_version}"
        );
        assert!(
            images
                .last()
                .is_some_and(|image| image.starts_with("gcr.io/distroless/cc-debian13:nonroot@")),
            "{dockerfile}: {images:?}"
        );
    }
}

/// CI proves both images by building them from the committed Dockerfiles
/// with buildah, never pulling (no base image can be pulled there), from the
/// release binaries it built once, and running what they hold; a step left
/// out of `.ci/run` proves nothing.
#[test]
fn ci_builds_both_images_without_pulling_and_runs_them() {
    let read = |path: &str| std::fs::read_to_string(repository().join(path)).expect(path);
    let run = read(".ci/run");
    assert!(
        run.lines()
            .any(|line| !line.trim_start().starts_with('#')
                && line.trim().ends_with(" .ci/images.sh")),
        ".ci/run runs .ci/images.sh"
    );
    let images = read(".ci/images.sh");
    for needed in [
        "BUILDAH_ISOLATION=chroot",
        "BINARIES=prebuilt",
        "RUNTIME_IMAGE=",
        "cargo build --release --locked",
        "-f Dockerfile",
        "-f migrations.dockerfile",
        "--userspec=65532:65532",
        "remount,bind,ro",
        "/usr/local/bin/migrate",
        "/readyz",
    ] {
        assert!(images.contains(needed), ".ci/images.sh lacks {needed}");
    }
    let builds: Vec<&str> = images
        .lines()
        .filter(|line| line.trim_start().starts_with("buildah build"))
        .collect();
    assert_eq!(builds.len(), 2, "one build per Dockerfile");
    for build in builds {
        assert!(
            build.contains("--pull=never"),
            "a build that may pull: {build}"
        );
    }
}
