//! The smallest template language that keeps templates readable files:
//! `{{name}}` substitutes a value; `{{#flag}}…{{/flag}}` keeps its body only
//! when `flag` is set. Unknown names are errors, so a typo in a template
//! fails the render instead of shipping an empty string.

use std::collections::BTreeMap;

pub fn render(
    template: &str,
    vars: &BTreeMap<&str, String>,
    flags: &[&str],
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
                out.push_str(&render(body, vars, flags)?);
            }
            rest = &rest[body_end + close.len()..];
        } else {
            let v = vars
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("template uses unknown value {name:?}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
