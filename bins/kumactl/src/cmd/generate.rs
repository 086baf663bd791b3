//! `kumactl generate dataplane-token --name N [-m MESH] [--valid-for D]`:
//! asks the control plane's admin server (`POST /tokens`, found through
//! `/catalog`) for a token and prints it, for `kuma-dp
//! --dataplane-token-file`.

use super::{Env, emit};
use crate::cli::DataplaneTokenArgs;
use anyhow::{Context as _, Result, bail};
use kuma_core::duration::KumaDuration;
use serde_json::json;

pub fn dataplane_token(env: &Env, args: &DataplaneTokenArgs) -> Result<()> {
    if args.name.trim().is_empty() {
        bail!("--name must not be empty: the name of the Dataplane the token is for");
    }
    let mut body = json!({"name": args.name, "mesh": args.mesh});
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
