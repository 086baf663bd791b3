//! `kumactl generate dataplane-token [--name N] [-m MESH] [--tag K=V ...]
//! [--type dataplane|ingress] [--valid-for D]`: asks the control plane's
//! admin server (`POST /tokens`, found through `/catalog`) for a token and
//! prints it, for `kuma-dp --dataplane-token-file`.

use super::{Env, emit};
use crate::cli::DataplaneTokenArgs;
use anyhow::{Context as _, Result, bail};
use kuma_core::duration::KumaDuration;
use serde_json::{Map, Value, json};

/// The `tags` of the request: each `--tag KEY=VALUE` adds VALUE to KEY's
/// allowed values.
fn tags(args: &[String]) -> Result<Map<String, Value>> {
    let mut tags = Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("--tag {arg:?}: must be KEY=VALUE, e.g. --tag kuma.io/service=backend");
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            bail!(
                "--tag {arg:?}: KEY and VALUE must not be empty, e.g. --tag kuma.io/service=backend"
            );
        }
        let values = tags
            .entry(key.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = values
            && !list.iter().any(|v| v == value)
        {
            list.push(Value::String(value.to_string()));
        }
    }
    Ok(tags)
}

pub fn dataplane_token(env: &Env, args: &DataplaneTokenArgs) -> Result<()> {
    let mut body = json!({"mesh": args.mesh});
    if let Some(name) = &args.name {
        if name.trim().is_empty() {
            bail!(
                "--name must not be empty: the name of the Dataplane the token is for (leave it out for any Dataplane whose --tag values fit)"
            );
        }
        body["name"] = json!(name.trim());
    }
    let tags = tags(&args.tags)?;
    if !tags.is_empty() {
        body["tags"] = Value::Object(tags);
    }
    if let Some(t) = &args.token_type {
        match t.trim() {
            "dataplane" | "ingress" => body["type"] = json!(t.trim()),
            other => bail!("--type {other:?}: must be dataplane or ingress"),
        }
    }
    if let Some(valid_for) = &args.valid_for {
        let d: KumaDuration = valid_for
            .trim()
            .parse()
            .with_context(|| format!("--valid-for {valid_for:?}"))?;
        body["validFor"] = json!(d.as_str());
    }
    let token = env
        .admin_client("dataplaneToken")?
        .post_text("/tokens", &body)?;
    emit(&format!("{}\n", token.trim()))
}

#[cfg(test)]
mod tests {
    use super::tags;

    #[test]
    fn tags_collect_values_per_key() {
        let args = [
            "kuma.io/service=backend".to_string(),
            "kuma.io/service=web".to_string(),
            "version=v1".to_string(),
            "kuma.io/service=backend".to_string(),
        ];
        let t = tags(&args).unwrap();
        assert_eq!(t["kuma.io/service"], serde_json::json!(["backend", "web"]));
        assert_eq!(t["version"], serde_json::json!(["v1"]));
        for bad in ["novalue", "=x", "k="] {
            let err = tags(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains("--tag"), "{err}");
        }
    }
}
