//! `kumactl config control-planes add|list|switch|remove`.

use super::{Env, emit};
use crate::cli::ControlPlanesCommand;
use crate::client::Client;
use crate::config::parse_auth;
use crate::table::Table;
use anyhow::{Result, bail};

pub fn run(env: &Env, cmd: ControlPlanesCommand) -> Result<()> {
    let path = env.config_path()?;
    let mut config = env.load_config()?;
    match cmd {
        ControlPlanesCommand::Add {
            name,
            address,
            overwrite,
            auth_type,
            auth_conf,
        } => {
            let auth = parse_auth(auth_type.as_deref(), &auth_conf)?;
            // Check the name first: no point probing a server for nothing.
            config
                .clone()
                .add_control_plane_with_auth(&name, &address, auth.clone(), overwrite)?;
            check_control_plane(&address)?;
            config.add_control_plane_with_auth(&name, &address, auth, overwrite)?;
            config.save(&path)?;
            emit(&format!(
                "added Control Plane {name:?}\nswitched active Control Plane to {name:?}\n"
            ))
        }
        ControlPlanesCommand::List => {
            let active = config
                .current_control_plane()
                .ok()
                .map(|cp| cp.name.clone());
            let mut t = Table::new(["ACTIVE", "NAME", "ADDRESS"]);
            for cp in &config.control_planes {
                let mark = if active.as_ref() == Some(&cp.name) {
                    "*"
                } else {
                    ""
                };
                t.row([mark, &cp.name, &cp.coordinates.api_server.url]);
            }
            emit(&t.to_string())
        }
        ControlPlanesCommand::Switch { name } => {
            config.switch(&name)?;
            config.save(&path)?;
            emit(&format!("switched active Control Plane to {name:?}\n"))
        }
        ControlPlanesCommand::Remove { name } => {
            let was_active = config.remove(&name)?;
            config.save(&path)?;
            emit(&format!("removed Control Plane {name:?}\n"))?;
            if was_active {
                eprintln!(
                    "warning: {name:?} was the active Control Plane; \
                     pick another with `kumactl config control-planes switch --name NAME`"
                );
            }
            Ok(())
        }
    }
}

/// A Control Plane is added only if its API server answers `GET /` like one.
fn check_control_plane(address: &str) -> Result<()> {
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        bail!("address {address:?} must be an http:// or https:// URL");
    }
    let index = Client::new(address).index()?;
    if index.get("tagline").and_then(|t| t.as_str()).is_none() {
        bail!("{address} answered, but not like a Kuma Control Plane API server");
    }
    Ok(())
}
