//! The smallest template language that keeps templates readable files:
//! `{{name}}` substitutes a value; `{{#flag}}…{{/flag}}` keeps its body only
//! when `flag` is set. Unknown names are errors, so a typo in a template
//! fails the render instead of shipping an empty string.
//!
//! Every template (YAML, shell, Dockerfile, Prometheus configuration) is
//! rendered here, and no value may leave its place: each is checked to
//! hold only characters that mean nothing in any of those languages (no
//! space, line break, quote, `$`, `#`, `{`…). Free text never goes through
//! a template: it is put into the parsed object as data (YAML/JSON) or
//! passed to a script in the environment or as a base64 file.

use std::collections::BTreeMap;

/// The characters a substituted input value may hold: letters, digits and
/// `. _ : / @ + = , % -`. Enough for names, versions, ports, CIDRs, image
/// references, URLs and base64; none of them quotes, comments, expands or
/// ends a line in YAML, shell or a Dockerfile.
pub fn check_atom(name: &str, v: &str) -> anyhow::Result<()> {
    let bad = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:/@+=,%-".contains(*c)));
    match bad {
        None => Ok(()),
        // The value itself is not echoed: it may be a credential.
        Some(c) => anyhow::bail!(
            "{name}: {c:?} is not allowed in a value eshop writes into a file or script (letters, digits and . _ : / @ + = , % - only)"
        ),
    }
}

pub fn render(
    template: &str,
    vars: &BTreeMap<&str, String>,
    flags: &[&str],
) -> anyhow::Result<String> {
    fill(template, vars, flags, true)
}

/// Fills one string value of already-parsed data (e.g. a JSON policy's
/// `"Resource"`): the result is that value, never text around it, so
/// input needs no check here. Never for a whole file.
pub fn render_string_value(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let v: BTreeMap<&str, String> = vars.iter().cloned().collect();
    fill(template, &v, &[], false)
}

fn fill(
    template: &str,
    vars: &BTreeMap<&str, String>,
    flags: &[&str],
    check: bool,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("unclosed {{{{ in template"))?;
        let name = after[..end].trim();
        rest = &after[end + 2..];
        if let Some(flag) = name.strip_prefix('#') {
            let close = format!("{{{{/{flag}}}}}");
            let body_end = rest
                .find(&close)
                .ok_or_else(|| anyhow::anyhow!("section {flag} is never closed"))?;
            let body = &rest[..body_end];
            if flags.contains(&flag) {
                out.push_str(&fill(body, vars, flags, check)?);
            }
            rest = &rest[body_end + close.len()..];
        } else {
            let v = vars
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("template uses unknown value {name:?}"))?;
            if check {
                check_atom(name, v)?;
            }
            out.push_str(v);
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// [`render`] with the values as a list of pairs, as the phases write them.
pub fn render_pairs(
    template: &str,
    vars: &[(&str, String)],
    flags: &[&str],
) -> anyhow::Result<String> {
    let v: BTreeMap<&str, String> = vars.iter().cloned().collect();
    render(template, &v, flags)
}

/// A file's bytes as a shell word: base64 (`A-Za-z0-9+/=`, all atoms), for
/// a script to decode (`printf %s "$x" | base64 -d`), so a file of any
/// content reaches a node without being pasted into the script's text.
pub fn base64_word(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_values_cannot_leave_their_place() {
        for hostile in [
            "a\nb: c",
            "x\" y",
            "$(reboot)",
            "`id`",
            "a # b",
            "{{a}}",
            "a'b",
            "a\u{2028}b",
            "a;b",
            "a b",
        ] {
            let vars = BTreeMap::from([("v", hostile.to_owned())]);
            let err = render("k: {{v}}", &vars, &[]).unwrap_err().to_string();
            assert!(err.starts_with("v: "), "{hostile:?}: {err}");
        }
        for fine in [
            "eshop-shop",
            "10.0.0.0/16",
            "reg:5000/x@sha256:ab",
            "https://h:1/p",
            "1.31.2",
            "QUJD+/==",
        ] {
            let vars = BTreeMap::from([("v", fine.to_owned())]);
            assert_eq!(render("{{v}}", &vars, &[]).unwrap(), fine);
        }
        // A string value of parsed data takes anything, and is never
        // rendered again: a value holding {{ stays inert.
        let v = render_string_value("arn:{{v}}", &[("v", "{{w}} \"x\"".to_owned())]);
        assert_eq!(v.unwrap(), "arn:{{w}} \"x\"");
    }

    #[test]
    fn values_and_sections() {
        let vars = BTreeMap::from([("a", "1".to_owned())]);
        assert_eq!(
            render("x{{a}}y{{#f}}[{{a}}]{{/f}}z", &vars, &["f"]).unwrap(),
            "x1y[1]z"
        );
        assert_eq!(render("x{{#f}}[{{a}}]{{/f}}z", &vars, &[]).unwrap(), "xz");
        assert!(render("{{b}}", &vars, &[]).is_err());
        assert!(render("{{#f}}", &vars, &[]).is_err());
    }
}
