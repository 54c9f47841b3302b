//! Images are not pulled: a small table maps an image to how its commands run on this host.

/// ONYX's stand-in for Argo's test image `argoproj/argosay:v2`, written from its documented
/// behaviour (`echo`, `cat`, `sleep`, `exit N`, `assert_contains`, `sh`).
pub const ARGOSAY: &str = r#"#!/bin/sh
set -eu
case ${1:-} in
  '') echo "hello argo" ;;
  assert_contains) grep -F "$3" "$2" ;;
  cat) cat "$2" ;;
  echo)
    case $# in
      1) echo "hello argo" ;;
      2) echo "$2" ;;
      3) mkdir -p "$(dirname "$3")"; echo "$2" > "$3" ;;
      *) exit 1 ;;
    esac ;;
  exit) exit "${2:-0}" ;;
  sleep) sleep "$2" ;;
  sh) sh "${2:-0}" ;;
  *) exit 1 ;;
esac
"#;

/// What running a container of `image` means on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRule {
    /// The command used when the container sets none (the image's ENTRYPOINT/CMD).
    pub default_command: Vec<String>,
}

/// The image's repository without registry and tag: `docker.io/argoproj/argosay:v2` →
/// `argoproj/argosay`.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name_end = no_digest[last_slash..]
        .find(':')
        .map(|i| last_slash + i)
        .unwrap_or(no_digest.len());
    let repo = &no_digest[..name_end];
    repo.strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("quay.io/"))
        .unwrap_or(repo)
}

pub fn tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    no_digest[last_slash..]
        .split_once(':')
        .map(|(_, t)| t)
        .unwrap_or("latest")
}

/// The rule for an image; `argosay` is the path of ONYX's argosay stand-in.
pub fn rule(image: &str, argosay: &str) -> ImageRule {
    let repo = repository(image);
    let cmd = |v: &[&str]| ImageRule {
        default_command: v.iter().map(|s| s.to_string()).collect(),
    };
    match repo {
        "argoproj/argosay" if tag(image) == "v1" => cmd(&["cowsay"]),
        "argoproj/argosay" => ImageRule {
            default_command: vec![argosay.to_string()],
        },
        "docker/whalesay" => cmd(&["cowsay"]),
        r if r.ends_with("python") || r.contains("python:") => cmd(&["python3"]),
        _ => cmd(&["sh"]),
    }
}

/// Files an image has at fixed paths that scripts name (argosay's `/argosay`), made in a pod's
/// root view as links to ONYX's stand-ins under the home as the pod sees it (`in_root_home`).
pub fn plant_image_files<'a>(
    root_view: &std::path::Path,
    images: impl IntoIterator<Item = &'a str>,
    in_root_home: &str,
) -> std::io::Result<()> {
    let argosay = images
        .into_iter()
        .any(|i| repository(i) == "argoproj/argosay" && tag(i) != "v1");
    let link = root_view.join("argosay");
    if argosay && std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(
            std::path::Path::new(in_root_home)
                .join("bin")
                .join("argosay"),
            link,
        )?;
    }
    Ok(())
}

/// Map a command as a container image would have it to the host.
pub fn host_command(command: &str, image: &str, argosay: &str) -> String {
    let repo = repository(image);
    match command {
        "/argosay" | "/bin/argosay" | "argosay" if repo == "argoproj/argosay" => {
            argosay.to_string()
        }
        "python" => which_in_image("python").unwrap_or_else(|| "python3".into()),
        "/usr/local/bin/python" | "/usr/bin/python" => {
            which_in_image("python3").unwrap_or_else(|| command.into())
        }
        c if c.starts_with('/') && !std::path::Path::new(c).exists() => {
            // A tool at another path in the image: use the host's copy of the same name.
            let base = c.rsplit('/').next().unwrap_or(c);
            which_in_image(base).unwrap_or_else(|| c.to_string())
        }
        c => c.to_string(),
    }
}

/// The host's system directories a pod's root shows (see `sandbox`): a command resolved for a
/// pod is looked for there only, never in a user's own directories (`~/.pyenv/shims`), which
/// the pod does not see.
pub const IMAGE_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/opt/bin";

/// `name` on [`IMAGE_PATH`].
pub fn which_in_image(name: &str) -> Option<String> {
    which_in(name, IMAGE_PATH)
}

pub fn which(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    which_in(
        name,
        &format!("{path}:/usr/games:/usr/local/bin:/usr/bin:/bin"),
    )
}

pub use pod_sandbox::which_in;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_rules() {
        assert_eq!(
            repository("docker.io/argoproj/argosay:v2"),
            "argoproj/argosay"
        );
        assert_eq!(repository("docker/whalesay:latest"), "docker/whalesay");
        assert_eq!(repository("localhost:5000/x/y:1"), "localhost:5000/x/y");
        assert_eq!(tag("argoproj/argosay:v1"), "v1");
        assert_eq!(
            rule("argoproj/argosay:v2", "/a").default_command,
            vec!["/a"]
        );
        assert_eq!(
            rule("argoproj/argosay:v1", "/a").default_command,
            vec!["cowsay"]
        );
        assert_eq!(
            host_command("/argosay", "argoproj/argosay:v2", "/x/argosay"),
            "/x/argosay"
        );
    }
}
