//! `kumactl version`: the client's version, and the server's if it answers
//! (an unreachable server is reported but is not an error).

use super::{Env, emit};
use crate::format::text;
use anyhow::Result;

pub fn run(env: &Env) -> Result<()> {
    emit(&format!("Client: kumactl {}\n", env!("CARGO_PKG_VERSION")))?;
    match env.client().and_then(|c| Ok(c.index()?)) {
        Ok(index) => {
            let tagline = match text(&index, "/tagline") {
                "" => "Kuma",
                t => t,
            };
            emit(&format!("Server: {tagline} {}\n", text(&index, "/version")))
        }
        Err(e) => {
            eprintln!("Server: unavailable ({e:#})");
            Ok(())
        }
    }
}
