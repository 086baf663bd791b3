//! Input handling for `kumactl apply`: `{{ key }}` placeholders filled from
//! `-v key=value`, and splitting a YAML stream into its `---` documents.

use anyhow::{Result, anyhow, bail};
use std::collections::BTreeMap;

/// Parses `-v key=value` arguments; a later value for a key wins.
pub fn parse_vars(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid variable {arg:?}: expected key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            bail!("invalid variable {arg:?}: the key is empty");
        }
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

/// Replaces every `{{ key }}` (spaces inside the braces optional) with its
/// value. A placeholder without a value is an error naming it and its line.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(len) = after.find("}}") else {
            break;
        };
        let key = after[..len].trim();
        out.push_str(&rest[..start]);
        match vars.get(key) {
            Some(value) => out.push_str(value),
            None => {
                let line = text[..text.len() - rest.len() + start]
                    .lines()
                    .count()
                    .max(1);
                bail!(
                    "line {line}: no value for placeholder {{{{ {key} }}}}; \
                     set it with -v {key}=VALUE"
                );
            }
        }
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a YAML stream on `---` separator lines, dropping documents that
/// hold only whitespace and comments.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if is_separator(line) {
            push_doc(&mut docs, std::mem::take(&mut current));
            // `--- key: value` starts a document on the separator line.
            let tail = line[3..].trim();
            if !tail.is_empty() && !tail.starts_with('#') {
                current.push_str(tail);
                current.push('\n');
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push_doc(&mut docs, current);
    docs
}

fn is_separator(line: &str) -> bool {
    line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace)
}

fn push_doc(docs: &mut Vec<String>, doc: String) {
    let has_content = doc.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#') && l != "..."
    });
    if has_content {
        docs.push(doc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[&str]) -> BTreeMap<String, String> {
        let args: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        parse_vars(&args).unwrap()
    }

    #[test]
    fn placeholders_are_replaced_with_or_without_spaces() {
        let v = vars(&["name=web-1", "port=8080"]);
        let out = substitute("name: {{ name }}\nport: {{port}}\nother: {{  name}}\n", &v).unwrap();
        assert_eq!(out, "name: web-1\nport: 8080\nother: web-1\n");
    }

    #[test]
    fn a_placeholder_without_value_is_an_error_with_its_line() {
        let err = substitute("a: b\nname: {{ name }}\n", &vars(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("{{ name }}"), "{msg}");
        assert!(msg.contains("-v name=VALUE"), "{msg}");
    }

    #[test]
    fn unclosed_braces_and_equal_signs_in_values_are_kept() {
        let v = vars(&["url=http://x?a=b"]);
        assert_eq!(
            substitute("u: {{url}} {{ x", &v).unwrap(),
            "u: http://x?a=b {{ x"
        );
    }

    #[test]
    fn bad_variables_are_rejected() {
        assert!(parse_vars(&["novalue".to_string()]).is_err());
        assert!(parse_vars(&["=v".to_string()]).is_err());
        assert_eq!(vars(&["k=", "k=2"])["k"], "2");
    }

    #[test]
    fn documents_split_on_separator_lines_and_empty_ones_are_dropped() {
        let text = "---\ntype: Mesh\nname: a\n---\n# only a comment\n---   \n\
                    type: Mesh\nname: b\nx: '---'\n--- # c\ntype: Mesh\nname: c\n---\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![
                "type: Mesh\nname: a\n",
                "type: Mesh\nname: b\nx: '---'\n",
                "type: Mesh\nname: c\n",
            ]
        );
    }

    #[test]
    fn a_single_document_needs_no_separator() {
        let docs = split_documents("type: Mesh\nname: a");
        assert_eq!(docs, vec!["type: Mesh\nname: a\n"]);
        assert!(split_documents("\n# nothing\n").is_empty());
    }
}
