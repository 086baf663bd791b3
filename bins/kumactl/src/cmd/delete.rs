//! `kumactl delete <type> <name> [-m MESH] [--force]`.

use super::{Env, emit};
use crate::cli::DeleteArgs;
use crate::types::{parse_type, resource_path};
use anyhow::Result;
use kuma_core::resource::Scope;

pub fn run(env: &Env, args: &DeleteArgs) -> Result<()> {
    let ty = parse_type(&args.resource_type)?;
    let mesh = (ty.scope() == Scope::Mesh).then_some(args.mesh.as_str());
    let mut path = resource_path(ty, mesh, &args.name);
    if args.force {
        path.push_str("?force=true");
    }
    env.client_for(ty)?.delete(&path)?;
    emit(&format!("deleted {ty} {:?}\n", args.name))
}
