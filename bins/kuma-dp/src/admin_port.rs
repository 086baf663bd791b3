//! Choice of the Envoy admin port.
//!
//! Like Kuma on Universal: the first port >= 30001 that can be bound on
//! `127.0.0.1`, unless `--admin-port` gives one port or a range `FROM-TO`
//! (then the first free port in it).

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::str::FromStr;

/// First port tried when `--admin-port` is not given.
pub const DEFAULT_FIRST_PORT: u16 = 30001;

/// An inclusive range of candidate admin ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminPortRange {
    /// First port tried.
    pub from: u16,
    /// Last port tried.
    pub to: u16,
}

impl Default for AdminPortRange {
    fn default() -> Self {
        Self {
            from: DEFAULT_FIRST_PORT,
            to: u16::MAX,
        }
    }
}

impl fmt::Display for AdminPortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    let port: u16 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a port number (1-65535)"))?;
    if port == 0 {
        return Err("port 0 is not allowed; give a port in 1-65535".into());
    }
    Ok(port)
}

impl FromStr for AdminPortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            None => {
                let port = parse_port(s)?;
                Ok(Self {
                    from: port,
                    to: port,
                })
            }
            Some((from, to)) => {
                let (from, to) = (parse_port(from)?, parse_port(to)?);
                if from > to {
                    return Err(format!(
                        "range {from}-{to} is empty: FROM must not be greater than TO"
                    ));
                }
                Ok(Self { from, to })
            }
        }
    }
}

impl AdminPortRange {
    /// The first port of the range that can be bound on `127.0.0.1` now.
    pub fn pick(&self) -> anyhow::Result<u16> {
        (self.from..=self.to)
            .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no free port for the Envoy admin interface on 127.0.0.1 in {self}; \
                     free one or pass another --admin-port"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_and_range() {
        assert_eq!(
            "9901".parse::<AdminPortRange>(),
            Ok(AdminPortRange {
                from: 9901,
                to: 9901
            })
        );
        assert_eq!(
            "30001-30010".parse::<AdminPortRange>(),
            Ok(AdminPortRange {
                from: 30001,
                to: 30010
            })
        );
        assert!("0".parse::<AdminPortRange>().is_err());
        assert!("70000".parse::<AdminPortRange>().is_err());
        assert!("x".parse::<AdminPortRange>().is_err());
        assert!(
            "10-5"
                .parse::<AdminPortRange>()
                .unwrap_err()
                .contains("empty")
        );
        assert!("10-".parse::<AdminPortRange>().is_err());
    }

    #[test]
    fn default_starts_at_30001() {
        let d = AdminPortRange::default();
        assert_eq!((d.from, d.to), (30001, 65535));
        assert_eq!(d.to_string(), "30001-65535");
    }

    /// Binds a free port P such that P+1 is free too, and keeps P bound.
    fn occupied_port_with_free_successor() -> (TcpListener, u16) {
        for _ in 0..50 {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let p = l.local_addr().unwrap().port();
            if p < u16::MAX - 6 && TcpListener::bind((Ipv4Addr::LOCALHOST, p + 1)).is_ok() {
                return (l, p);
            }
        }
        panic!("could not find two adjacent free ports");
    }

    #[test]
    fn skips_an_occupied_port() {
        let (_held, p) = occupied_port_with_free_successor();
        let range = AdminPortRange { from: p, to: p + 5 };
        assert_eq!(range.pick().unwrap(), p + 1);
    }

    #[test]
    fn single_free_port_is_picked() {
        let (held, p) = occupied_port_with_free_successor();
        drop(held);
        assert_eq!(AdminPortRange { from: p, to: p }.pick().unwrap(), p);
    }

    #[test]
    fn full_range_is_an_error() {
        let (_held, p) = occupied_port_with_free_successor();
        let err = AdminPortRange { from: p, to: p }.pick().unwrap_err();
        assert!(err.to_string().contains(&p.to_string()), "{err}");
    }
}
