//! `kumactl get <types> [name] [-m MESH] [-o table|yaml|json]`.

use super::{Env, emit, emit_value, list_value};
use crate::cli::{GetArgs, Output};
use crate::types::{collection_path, parse_type, resource_path};
use crate::views::resource_table;
use anyhow::Result;
use kuma_core::resource::Scope;
use time::OffsetDateTime;

pub fn run(env: &Env, args: &GetArgs) -> Result<()> {
    let ty = parse_type(&args.resource_type)?;
    let mesh = (ty.scope() == Scope::Mesh).then_some(args.mesh.as_str());
    let client = env.client_for(ty)?;
    let (items, value) = match &args.name {
        Some(name) => {
            let one = client.get(&resource_path(ty, mesh, name))?;
            (vec![one.clone()], one)
        }
        None => {
            let items = client.list(&collection_path(ty, mesh))?;
            (items.clone(), list_value(items))
        }
    };
    match args.output {
        Output::Table => emit(&resource_table(ty, &items, OffsetDateTime::now_utc()).to_string()),
        other => emit_value(&value, other),
    }
}
