//! Spin's manifest syntax rules: `{{ variable }}` templates and the shapes of ids and names.

use anyhow::Context as _;

/// The `{{ name }}` references in a template.
pub(super) fn template_references(template: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    expand(template, |name| {
        names.push(name.to_string());
        Ok(String::new())
    })?;
    Ok(names)
}

/// Replaces each `{{ name }}` in a template with `value(name)`.
pub(super) fn expand(
    template: &str,
    mut value: impl FnMut(&str) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .context("unclosed '{{' in a variable template")?;
        out.push_str(&value(rest[start + 2..start + end].trim())?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Spin's component ids: lowercase words of letters and digits joined by single hyphens.
pub(super) fn is_kebab(id: &str) -> bool {
    id.split('-').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// Spin's variable names: lowercase letters, digits and underscores, starting with a letter.
pub(super) fn is_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spin_rules() {
        assert!(is_kebab("ember-function") && !is_kebab("Ember") && !is_kebab("a--b"));
        assert!(is_snake("default_model") && !is_snake("default-model"));
    }

    #[test]
    fn templates_expand_and_name_their_references() {
        let out = expand("a {{ x }} b {{y}}", |name| Ok(name.to_uppercase())).unwrap();
        assert_eq!(out, "a X b Y");
        assert_eq!(
            template_references("{{ model }}/{{ v }}").unwrap(),
            ["model", "v"]
        );
        assert!(expand("{{ open", |_| Ok(String::new())).is_err());
    }
}
